"""Intervals for every headline number of a synthetic 1M-position, 10k-example run: how long, and what they cost
a run at write time against its scoring time.

    PYTHONPATH=. python benchmarks/intervals.py [--examples 10000] [--positions 1000000] [--resamples 1000]

Times (best of --repeat) of: the per-example sums (compute/core/example_sums.py, both category definitions,
from the per-position columns); every number with its interval from those sums (what a page does with the
stored sums: one product per definition); the KL and JS quantiles with intervals; the whole `estimates` and
`position_intervals` tables (what the writer stores). Targets (issue 18): every number's interval < 2 s;
the write-time cost (the three stored tables) < 2 % of the run's scoring time, with the scoring rate given
by --tokens-per-second (default: 288 tokens/s, this CPU's best measured rate in benchmarks/README.md,
scoring.py on a small random Llama; a real model scores slower, which only lowers the share).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from compute.core import estimates, example_sums, intervals
from compute.core.categories import DEFINITIONS, categories

VOCAB = 32000
TOP_K = 10


class MemorySource:
    """The per-position columns of a synthetic run, as compute.core.aggregates reads a run (its Source)."""

    def __init__(self, examples: int, positions: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        lengths = rng.multinomial(positions - examples, np.full(examples, 1 / examples)) + 1
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        example = np.repeat(np.arange(examples, dtype=np.int32), lengths)
        t = (np.arange(positions) - offsets[example]).astype(np.int32)
        token_id = np.minimum(rng.zipf(1.3, positions), VOCAB - 1).astype(np.int32)
        self.n_positions = positions
        self.data: dict[str, np.ndarray] = {
            "examples/offsets": offsets,
            "positions/example": example,
            "positions/t": t,
            "positions/token_id": token_id,
            "positions/kl": rng.exponential(0.1, positions).astype(np.float32),
            "positions/js": rng.exponential(0.02, positions).astype(np.float32),
            "tokens/id": np.arange(VOCAB, dtype=np.int32),
            "tokens/text": np.array([f" w{i}" for i in range(VOCAB)], dtype=object),
        }
        for side in ("aligned", "base"):
            rank = np.where(rng.random(positions) < 0.8, 0, rng.geometric(0.3, positions)).astype(np.int32)
            topk = rng.integers(0, VOCAB, (positions, TOP_K), dtype=np.int32)
            topk[rank == 0, 0] = token_id[rank == 0]
            self.data |= {
                f"sides/{side}/rank": rank,
                f"sides/{side}/topk_ids": topk,
                f"sides/{side}/entropy": rng.gamma(1.5, 1.0, positions).astype(np.float32),
                f"sides/{side}/logprob": -rng.exponential(1.0, positions).astype(np.float32),
            }

    def has(self, dataset: str) -> bool:
        return dataset in self.data

    def read(self, dataset: str, rows: slice | None = None) -> np.ndarray:
        return self.data[dataset] if rows is None else self.data[dataset][rows]


def best_of(repeat: int, fn):
    """(best wall seconds, best CPU seconds of this process, the result): on a shared, loaded machine the CPU
    time is what the step costs, the wall time what a viewer waited."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return (min(walls), min(cpus)), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--positions", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokens-per-second", type=float, default=288.0, help="the run's scoring rate")
    args = parser.parse_args()

    source = MemorySource(args.examples, args.positions)
    category_columns = {d: categories(source.read, d) for d in DEFINITIONS}
    sums_time, sums = best_of(args.repeat, lambda: example_sums.compute(source, category_columns))
    weights_time, weights = best_of(
        args.repeat, lambda: intervals.resample_weights(args.examples, args.resamples, estimates.SEED)
    )
    parts = [sums.filter(pl.col("definition") == d).sort("example") for d in DEFINITIONS]

    def from_sums():
        return [estimates.estimates(part, weights) for part in parts]

    numbers_time, found = best_of(args.repeat, from_sums)
    quantile_time, quantiles = best_of(args.repeat, lambda: estimates.quantile_rows(source, weights))
    table_time, table = best_of(args.repeat, lambda: estimates.table(source, sums, args.resamples, estimates.SEED))
    bands_time, bands = best_of(
        args.repeat, lambda: estimates.position_table(source, category_columns, args.resamples, estimates.SEED)
    )
    count = sum(len(f) for f in found) + len(quantiles)
    every_number = [w + n + q for w, n, q in zip(weights_time, numbers_time, quantile_time, strict=True)]
    write_cost = [s + t + b for s, t, b in zip(sums_time, table_time, bands_time, strict=True)]
    scoring = args.positions / args.tokens_per_second

    def row(what: str, times: tuple[float, float], bold: bool = False) -> str:
        mark = "**" if bold else ""
        return f"| {mark}{what}{mark} | {mark}{times[0]:.2f}{mark} | {mark}{times[1]:.2f}{mark} |"

    print(
        f"synthetic run: {args.examples:,} examples, {args.positions:,} positions, top-k {TOP_K}; "
        f"{args.resamples} resamples; best of {args.repeat}\n"
    )
    print("| step | wall s | CPU s |")
    print("| --- | --: | --: |")
    print(row("per-example sums, both definitions (example_sums.compute)", sums_time))
    print(row(f"resample weights ({args.resamples} x {args.examples:,} multinomial counts)", weights_time))
    print(row(f"every number from the sums, both definitions ({count - len(quantiles)} numbers)", numbers_time))
    print(row(f"KL and JS quantiles q50/q90/q99/max with intervals ({len(quantiles)} numbers)", quantile_time))
    print(row("intervals for every number (weights + numbers + quantiles)", tuple(every_number), bold=True))
    print(row(f"the stored `estimates` table (estimates.table, {table.height} rows)", table_time))
    print(row(f"the stored `position_intervals` table (bands per bin of t, {bands.height} rows)", bands_time))
    print(row("write-time cost: sums + estimates + position_intervals tables", tuple(write_cost)))
    print(
        f"\nScoring {args.positions:,} positions at {args.tokens_per_second:g} tokens/s: {scoring:,.0f} s; "
        f"the write-time cost is {100 * write_cost[0] / scoring:.3f} % of it (wall; target < 2 %). "
        f"Every number's interval: {every_number[0]:.2f} s wall, {every_number[1]:.2f} s CPU (target < 2 s)."
    )


if __name__ == "__main__":
    main()
