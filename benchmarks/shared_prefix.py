"""Time scoring with and without the shared-prefix KV cache on a real recipe, and check they agree.

    python benchmarks/shared_prefix.py [RECIPE] [--examples 8] [--threads N]

Default recipe: gemma-3-270m with a URIAL prompt (compute/recipes/gemma-270m-urial-vs-zeroshot.toml),
whose ~1,300-token in-context prompt is the same for every example. Both modes score the same
examples in the same batches with the same loaded models; the table gives seconds, answer tokens per
second, the speed-up, and the largest difference between the two modes' stored numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from compute.core.config import load_config
from compute.core.inputs import select_examples
from compute.engine.planning import make_batches, plan
from compute.engine.runner import Runner
from compute.engine.sides import load_sides

ROOT = Path(__file__).resolve().parents[1]

DEFAULT = ROOT / "compute" / "recipes" / "gemma-270m-urial-vs-zeroshot.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default=str(DEFAULT))
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = load_config(args.recipe)
    sides = load_sides(config)
    planned = plan(sides, select_examples(config, args.examples), config.max_new_tokens)
    batches = make_batches(list(planned), planned, config)
    tokens = sum(len(p.answer or []) for p in planned.values())

    rows, outputs = [], {}
    for reuse in (False, True):
        started = time.perf_counter()  # building the prefix cache counts
        runner = Runner(dataclasses.replace(config, reuse_prefix=reuse), sides, list(planned.values()))
        outputs[reuse] = [e for batch in batches for e in runner.process([planned[i] for i in batch])[config.name]]
        seconds = time.perf_counter() - started
        shared = {name: len(prefix.ids) for name, prefix in runner.prefixes.items()}
        rows.append((reuse, shared, seconds))

    diff = max(
        float(np.abs(a.sides[side].logprob - b.sides[side].logprob).max(initial=0))
        for a, b in zip(outputs[False], outputs[True], strict=True)
        for side in ("aligned", "base")
    )
    plain_seconds = rows[0][2]
    print(
        f"recipe {Path(args.recipe).name}: {len(planned)} examples, {tokens} answer tokens, "
        f"{len(batches)} batches, torch threads {torch.get_num_threads()}"
    )
    print("| mode | shared prefix tokens | seconds | answer tokens/s | speed-up |")
    print("|---|---|--:|--:|--:|")
    for reuse, shared, seconds in rows:
        mode = "shared-prefix cache" if reuse else "plain (prefix recomputed)"
        prefix_text = ", ".join(f"{k} {v}" for k, v in shared.items()) or "-"
        print(f"| {mode} | {prefix_text} | {seconds:.1f} | {tokens / seconds:.1f} | {plain_seconds / seconds:.2f}x |")
    print(f"largest |difference| of a stored log-prob between the modes: {diff:.2e}")


if __name__ == "__main__":
    main()
