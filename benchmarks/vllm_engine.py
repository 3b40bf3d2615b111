"""Greedy answers from the vLLM engine against the transformers engine: same model, inputs and threads.

    python benchmarks/vllm_engine.py RUN.toml --vllm-python /path/to/vllm-venv/bin/python
        [--limit 32] [--max-new-tokens 128] [--threads 2] [--memory 0.15]

The run's sides, contexts and batches are made as `compute run` makes them (the dataset's answers are dropped,
so every example is generated); each batch is decoded by the run's transformers path (Runner.generate) and by
the vLLM engine (compute/engine/vllm_engine.py), alternated batch by batch so that load from other processes
hits both alike. Start-up is timed on its own: loading the transformers model, and starting vLLM (its process,
the model, the KV cache). Prints the table and how many answers are identical token for token.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import torch

from compute.core.config import VllmConfig, load_config
from compute.core.inputs import select_examples
from compute.engine.planning import make_batches, plan
from compute.engine.runner import Runner
from compute.engine.sides import load_sides
from compute.engine.vllm_engine import VllmEngine


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="a run's TOML config (its dataset's first --limit examples are answered)")
    p.add_argument("--vllm-python", required=True, help="the Python of a venv where vLLM is installed")
    p.add_argument("--limit", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="torch threads, and the CPUs vLLM binds (default 2)")
    p.add_argument("--memory", type=float, default=0.15, help="vLLM's share of memory (default 0.15)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{args.threads - 1}"
    config = replace(
        load_config(args.config),
        max_new_tokens=args.max_new_tokens,
        branching=None,
        engine="vllm",
        vllm=VllmConfig(python=args.vllm_python, memory=args.memory),
    )
    examples = [replace(e, response=None, answer_ids=None) for e in select_examples(config, args.limit)]
    started = time.perf_counter()
    sides = load_sides(config)
    load = {"transformers": time.perf_counter() - started}
    planned = plan(sides, examples, config.max_new_tokens)
    runner = Runner(replace(config, engine="transformers"), sides, list(planned.values()))
    longest = max(len(c) for p in planned.values() for c in p.contexts.values())
    engine = VllmEngine(config, longest + config.max_new_tokens)
    side = sides["aligned"]
    started = time.perf_counter()
    engine.generate(side, [planned[examples[0].index].contexts["aligned"]], 1, ())  # starts vLLM
    load["vllm"] = time.perf_counter() - started
    seconds = {"transformers": 0.0, "vllm": 0.0}
    tokens = {"transformers": 0, "vllm": 0}
    same = 0
    batches = make_batches(list(planned), planned, config)
    try:
        for number, batch in enumerate(batches, start=1):
            contexts = [planned[i].contexts["aligned"] for i in batch]
            started = time.perf_counter()
            theirs = engine.generate(side, contexts, config.max_new_tokens, config.stop)
            seconds["vllm"] += time.perf_counter() - started
            started = time.perf_counter()
            ours = [ids for ids, _, _ in runner.generate([planned[i] for i in batch])]
            seconds["transformers"] += time.perf_counter() - started
            tokens["vllm"] += sum(map(len, theirs))
            tokens["transformers"] += sum(map(len, ours))
            same += sum(a == b for a, b in zip(ours, theirs, strict=True))
            print(f"batch {number}/{len(batches)}: {seconds}", flush=True)
    finally:
        engine.close()
    print(
        f"\n{config.aligned.model}, {side.model.dtype_name}, vLLM {engine.version}, {args.threads} threads each, "
        f"{len(examples)} instructions in {len(batches)} batches of up to {config.batch_size}, "
        f"up to {config.max_new_tokens} new tokens\n"
    )
    print("| engine | start-up s | answer tokens | decoding s | tokens/s |")
    print("| --- | --: | --: | --: | --: |")
    for name in ("transformers", "vllm"):
        print(
            f"| {name} | {load[name]:.1f} | {tokens[name]} | {seconds[name]:.1f} | {tokens[name] / seconds[name]:.2f} |"
        )
    speedup = (tokens["vllm"] / seconds["vllm"]) / (tokens["transformers"] / seconds["transformers"])
    print(f"\nvLLM / transformers tokens/s = **{speedup:.2f}**; identical greedy answers {same} of {len(examples)}")


if __name__ == "__main__":
    main()
