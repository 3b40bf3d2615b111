"""A run's generation phase against a bare `model.generate` of the same model and inputs.

    python benchmarks/generation.py RUN.toml [--limit 6] [--max-new-tokens 32] [--threads N] [--rounds 2]

The run's sides, contexts, shared prefixes and batches are made as `compute run` makes them; then each batch is
decoded (r) by the run's own path (Runner.generate: stop strings, the shared-prefix cache, the progress hook)
and (b) by a bare `generate` on the same left-padded contexts with the same greedy settings and EOS, alternated
batch by batch so that load from other processes hits both alike. Both must give the same answers (checked).
Both wall and CPU time (this process's, all threads) are summed; on a machine shared with other jobs the CPU
time is the steadier of the two (with --threads 1 it is the work done). Target: (b)/(r) at least 0.9.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from compute.core.config import load_config
from compute.core.inputs import select_examples
from compute.engine.generate import eos_ids, finish_answer
from compute.engine.planning import Planned, make_batches, plan
from compute.engine.runner import Runner
from compute.engine.sides import Side, load_sides

TARGET = 0.9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="a run's TOML config (its dataset's first --limit examples are answered)")
    p.add_argument("--limit", type=int, default=6)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--rounds", type=int, default=2, help="times each batch is decoded by each path (default 2)")
    return p.parse_args(argv)


@torch.inference_mode()
def bare_generate(side: Side, contexts: list[list[int]], max_new_tokens: int, stop: tuple[str, ...]) -> list:
    """transformers' generate as a user calls it: left-padded batch, greedy, the model's EOS ids."""
    lm = side.model.weights.lm
    tokenizer = side.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(map(len, contexts))
    input_ids = torch.full((len(contexts), width), pad, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, context in enumerate(contexts):
        input_ids[row, width - len(context) :] = torch.tensor(context)
        attention_mask[row, width - len(context) :] = 1
    ends = eos_ids(side)
    output = lm.generate(
        input_ids=input_ids.to(side.model.device),
        attention_mask=attention_mask.to(side.model.device),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=ends,
        pad_token_id=pad,
        stop_strings=list(stop) or None,
        tokenizer=tokenizer if stop else None,
    )
    return [finish_answer(side, row, ends, stop) for row in output[:, width:].tolist()]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = replace(load_config(args.config), max_new_tokens=args.max_new_tokens, branching=None)
    examples = [replace(e, response=None, answer_ids=None) for e in select_examples(config, args.limit)]
    sides = load_sides(config)
    planned = plan(sides, examples, config.max_new_tokens)
    runner = Runner(config, sides, list(planned.values()))
    steps = [0]
    runner.on_tokens = lambda n: steps.__setitem__(0, steps[0] + n)  # the run's progress hook, counted
    side = sides["aligned"]
    batches: list[list[Planned]] = [[planned[i] for i in b] for b in make_batches(list(planned), planned, config)]
    times = {"run": 0.0, "bare": 0.0}
    cpu = {"run": 0.0, "bare": 0.0}
    tokens = 0
    for batch in batches:
        contexts = [p.contexts["aligned"] for p in batch]
        for _ in range(args.rounds):
            started, started_cpu = time.perf_counter(), time.process_time()
            ours, _ = runner.generate(batch)
            times["run"] += time.perf_counter() - started
            cpu["run"] += time.process_time() - started_cpu
            started, started_cpu = time.perf_counter(), time.process_time()
            theirs = bare_generate(side, contexts, config.max_new_tokens, config.stop)
            times["bare"] += time.perf_counter() - started
            cpu["bare"] += time.process_time() - started_cpu
            assert ours == theirs, "the run's answers differ from a bare generate's"
        tokens += sum(map(len, ours))
    prefix = runner.prefixes.get("aligned")
    unused = " (unused: sliding window)" if prefix and side.model.has_sliding_window else ""
    print(
        f"{config.aligned.model}, {side.model.dtype_name}, {torch.get_num_threads()} threads, "
        f"{len(examples)} examples in {len(batches)} batches of up to {config.batch_size}, "
        f"{config.max_new_tokens} new tokens, stop {list(config.stop)}, shared prefix "
        f"{len(prefix.ids) if prefix else 0} tokens{unused}"
        f"; {args.rounds} rounds"
    )
    print()
    print("| what | answer tokens | wall s | CPU s | tokens per CPU s |")
    print("| --- | --: | --: | --: | --: |")
    for name, label in (("run", "(r) the run's generation (Runner.generate)"), ("bare", "(b) bare model.generate")):
        n = tokens * args.rounds
        print(f"| {label} | {n} | {times[name]:.1f} | {cpu[name]:.1f} | {n / cpu[name]:.2f} |")
    print()
    print(
        f"(b)/(r): CPU time **{cpu['bare'] / cpu['run']:.2f}**, wall time {times['bare'] / times['run']:.2f} "
        f"(target at least {TARGET}); the progress hook counted {steps[0]} decoded tokens"
    )


if __name__ == "__main__":
    main()
