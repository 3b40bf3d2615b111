"""Shards (`run --shard I/N`) one after another, merged, against one process: the same artifact, and the cost.

    python benchmarks/shards.py RUN.toml [--limit 16] [--shards 4] [--threads 1] [--batch-size N]

Runs the config once as one process and once as N shards followed by the merge (the same command without
--shard), in this process, into two temporary out_dirs. Prints wall and CPU seconds of each and whether the two
artifacts hold the same datasets and attributes, byte for byte (creation time aside).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import torch

from compute.core.config import load_config
from compute.core.shards import Shard
from compute.engine.run import run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("--limit", type=int, default=16)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, help="override the config's batch_size (shards deal whole batches)")
    return p.parse_args(argv)


def differences(path: Path, reference: Path) -> list[str]:
    """Names of datasets or attribute sets that differ (created_utc aside)."""
    found = []
    with h5py.File(path) as a, h5py.File(reference) as b:
        names: list[str] = []
        b.visit(names.append)
        for name in ["/", *names]:
            if name not in a:
                found.append(name)
                continue
            attrs = [{k: v for k, v in f[name].attrs.items() if k != "created_utc"} for f in (a, b)]
            if str(attrs[0]) != str(attrs[1]):
                found.append(f"{name} (attributes)")
            if isinstance(b[name], h5py.Dataset) and not np.array_equal(a[name][()], b[name][()]):
                found.append(name)
    return found


def timed(work) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    if args.batch_size:
        config = replace(config, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as folder:
        one = replace(config, out_dir=Path(folder) / "one")
        sharded = replace(config, out_dir=Path(folder) / "sharded")
        rows = {"one process": timed(lambda: run(one, args.limit))}
        for index in range(1, args.shards + 1):
            shard = Shard(index, args.shards)
            rows[f"shard {shard}"] = timed(lambda shard=shard: run(sharded, args.limit, shard=shard))
        rows["merge (no --shard)"] = timed(lambda: run(sharded, args.limit))
        name = f"{config.name}.h5"
        diff = differences(sharded.out_dir / name, one.out_dir / name)
    print(
        f"\n{config.aligned.model} vs {config.base.model}, {args.limit} examples in batches of "
        f"{config.batch_size}, {args.threads} threads\n"
    )
    print("| what | wall s | CPU s |")
    print("| --- | --: | --: |")
    for label, (wall, cpu) in rows.items():
        print(f"| {label} | {wall:.1f} | {cpu:.1f} |")
    shards_wall = sum(wall for label, (wall, _) in rows.items() if label != "one process")
    shards_cpu = sum(cpu for label, (_, cpu) in rows.items() if label != "one process")
    print(
        f"| {args.shards} shards + merge | {shards_wall:.1f} | {shards_cpu:.1f} |\n\n"
        f"sharded / one process: CPU {shards_cpu / rows['one process'][1]:.2f}, wall "
        f"{shards_wall / rows['one process'][0]:.2f}; artifacts "
        + ("identical, every dataset and attribute byte for byte" if not diff else f"DIFFER in {diff}")
    )


if __name__ == "__main__":
    main()
