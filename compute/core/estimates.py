"""Every headline number of a run with its cluster-bootstrap interval over examples, and paired differences.

From a run's per-example sums (compute/core/example_sums.py, one category definition): every number is a
function of column totals, so all resamples of all numbers cost one product `weights @ sums`. The KL and
JS quantiles need the per-position values (compute/core/quantiles.py). The aggregates table `estimates`
stores the result per definition: number, value, low, high, n (examples), resamples, seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import polars as pl

from compute.core import intervals, quantiles, tables
from compute.core.example_sums import AGREEMENT_K, BUCKETS, CATEGORY_NAMES, TYPE_SLUGS, type_slug
from compute.core.intervals import Estimate
from compute.core.token_types import DISCOURSE, POLITENESS, PUNCTUATION, WHITESPACE

RESAMPLES = intervals.RESAMPLES
SEED = 0
QUANTILE_STATISTICS = ("kl", "js")
STYLISTIC_SLUGS = tuple(type_slug(t) for t in (DISCOURSE, POLITENESS, PUNCTUATION, WHITESPACE))
Number = tuple[Callable[..., np.ndarray | float], tuple[str, ...]]  # fn of column totals, the columns


def _exp_mean(total, positions):
    return np.exp(intervals.divide(total, positions))


def _exp_ratio(aligned, base, positions):
    return np.exp(intervals.divide(base - aligned, positions))


def _part_of(whole, *parts):
    return intervals.divide(sum(parts), whole)


def numbers(columns: list[str]) -> dict[str, Number]:
    """The numbers a table with these (non-null) columns gives: name -> (fn of totals, the columns it needs)."""
    div = intervals.divide
    made: dict[str, Number] = {}
    suffixes = ["", *(f"_{b}" for b in BUCKETS), *(f"_type_{slug}" for slug in TYPE_SLUGS)]
    for suffix in suffixes:
        for name in CATEGORY_NAMES:
            made[f"share_{name}{suffix}"] = (div, (f"{name}{suffix}", f"positions{suffix}"))
    for column in tables.AVERAGED:
        made[f"mean_{column}"] = (div, (f"sum_{column}", "positions"))
    for side in ("aligned", "base"):
        made[f"exp_entropy_{side}"] = (_exp_mean, (f"sum_entropy_{side}", "positions"))
    made["exp_entropy_ratio"] = (_exp_ratio, ("sum_entropy_aligned", "sum_entropy_base", "positions"))
    made["answer_is_aligned_top"] = (div, ("aligned_top", "positions"))
    for k in AGREEMENT_K:
        for side in ("aligned", "base"):
            made[f"{side}_top1_in_top{k}"] = (div, (f"{side}_top1_in_top{k}", "positions"))
    made["share_from_base"] = (div, ("from_base", "positions"))
    made["share_from_aligned"] = (lambda b, p: div(p - b, p), ("from_base", "positions"))
    made["accuracy"] = (div, ("right", "judged"))
    # stylistic tokens (discourse, politeness, punctuation, whitespace): their share of the shifted and of all
    made["stylistic_of_shifted"] = (_part_of, ("shifted", *(f"shifted_type_{s}" for s in STYLISTIC_SLUGS)))
    made["stylistic_of_all"] = (_part_of, ("positions", *(f"positions_type_{s}" for s in STYLISTIC_SLUGS)))
    return {name: number for name, number in made.items() if all(c in columns for c in number[1])}


def _matrix(sums: pl.DataFrame) -> pl.DataFrame:
    """The numeric, non-null columns of one definition's sums, with the verdicts as counts (right, judged)."""
    frame = sums.drop("definition", "example", strict=False)
    if "correct" in frame.columns and frame["correct"].null_count() == 0:
        correct = frame["correct"]
        frame = frame.with_columns(right=(correct == 1).cast(pl.Int64), judged=(correct >= 0).cast(pl.Int64))
    keep = [c for c in frame.columns if frame[c].null_count() == 0 and not c.startswith("max_") and c != "correct"]
    return frame.select(keep)


class Totals:
    """A sums frame's totals over all examples and over every resample, picked by column name."""

    def __init__(self, frame: pl.DataFrame, weights: np.ndarray):
        self.full, self.resampled = intervals.totals(frame.to_numpy(), weights)
        self.index = {c: i for i, c in enumerate(frame.columns)}

    def pick(self, columns: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        cols = [self.index[c] for c in columns]
        return self.full[cols], self.resampled[:, cols].T


def estimates(
    sums: pl.DataFrame, weights: np.ndarray, level: float = intervals.LEVEL, names: list[str] | None = None
) -> dict[str, Estimate]:
    """Every number the sums give (see `numbers`), over the resamples in `weights`."""
    frame = _matrix(sums)
    chosen = numbers(frame.columns)
    if names is not None:
        chosen = {name: chosen[name] for name in names if name in chosen}
    if frame.height == 0:
        return {name: Estimate(math.nan, math.nan, math.nan, 0) for name in chosen}
    totals = Totals(frame, weights)
    return {
        name: intervals.interval(*intervals.apply(fn, *totals.pick(needed)), frame.height, level)
        for name, (fn, needed) in chosen.items()
    }


def paired_differences(
    sums_a: pl.DataFrame, sums_b: pl.DataFrame, weights: np.ndarray, level: float = intervals.LEVEL
) -> dict[str, Estimate]:
    """For runs over the same answers (rows aligned by example): every number both give, a minus b, on the same
    resamples."""
    frame_a, frame_b = _matrix(sums_a), _matrix(sums_b)
    common = numbers(sorted(set(frame_a.columns) & set(frame_b.columns)))
    a, b = Totals(frame_a, weights), Totals(frame_b, weights)
    result = {}
    for name, (fn, needed) in common.items():
        value_a, values_a = intervals.apply(fn, *a.pick(needed))
        value_b, values_b = intervals.apply(fn, *b.pick(needed))
        result[name] = intervals.interval(value_a - value_b, values_a - values_b, frame_a.height, level)
    return result


def quantile_rows(source, weights: np.ndarray, level: float = intervals.LEVEL) -> dict[str, Estimate]:
    """kl_q50, kl_q90, kl_q99, kl_max and the same of js, from the per-position columns the run has."""
    result = {}
    example = source.read("positions/example")
    for stat in QUANTILE_STATISTICS:
        if source.has(f"positions/{stat}"):
            values = source.read(f"positions/{stat}").astype(np.float64)
            for name, estimate in quantiles.quantile_estimates(values, example, weights, level=level).items():
                result[f"{stat}_{name}"] = estimate
    return result


def table(source, sums: pl.DataFrame, resamples: int = RESAMPLES, seed: int = SEED) -> pl.DataFrame:
    """The `estimates` aggregates table: per definition, every number with its interval."""
    n = int(sums["example"].n_unique()) if sums.height else 0
    weights = intervals.resample_weights(n, resamples, seed)
    shared = quantile_rows(source, weights)
    rows = []
    for (definition,), part in sums.group_by("definition", maintain_order=True):
        found = {**estimates(part.sort("example"), weights), **shared}
        rows += [{"definition": definition, "number": name, **e.as_dict()} for name, e in found.items()]
    schema = {"definition": pl.String, "number": pl.String, "value": pl.Float64, "low": pl.Float64}
    schema |= {"high": pl.Float64, "n": pl.Int64}
    return pl.DataFrame(rows, schema=schema).with_columns(
        pl.lit(resamples, dtype=pl.Int64).alias("resamples"), pl.lit(seed, dtype=pl.Int64).alias("seed")
    )


def from_table(frame: pl.DataFrame) -> dict[str, Estimate]:
    """One definition's rows of an `estimates` table as name -> Estimate."""
    return {
        row["number"]: Estimate(row["value"], row["low"], row["high"], row["n"]) for row in frame.iter_rows(named=True)
    }


def _per_example_bin(example: np.ndarray, bins: np.ndarray, n: int, k: int, values=None) -> np.ndarray:
    """(examples, bins) sums of `values` (counts where None) per example and bin."""
    flat = np.bincount(example * k + bins, weights=values, minlength=n * k)
    return flat.reshape(n, k).astype(np.float64)


def position_table(
    source, category_columns: dict[str, np.ndarray], resamples: int = RESAMPLES, seed: int = SEED
) -> pl.DataFrame:
    """The `position_intervals` aggregates table: per definition and bin of t (the Positions page's bins,
    compute/core/tables.py), the shifted and marginal shares and the mean of every averaged statistic, each
    with its interval over resamples of the examples, and `answers`: how many examples have positions there."""
    offsets = source.read("examples/offsets")
    n = len(offsets) - 1
    example = source.read("positions/example").astype(np.int64)
    t = source.read("positions/t")
    edges = tables.bin_edges(int(t.max()) if t.size else 0)
    bins = np.searchsorted(edges, t, side="right") - 1
    k = len(edges)
    weights = intervals.resample_weights(n, resamples, seed)
    positions = _per_example_bin(example, bins, n, k)
    drawn_positions = weights @ positions
    answers = (positions > 0).sum(axis=0)

    def rows(definition: str, number: str, sums: np.ndarray) -> list[dict]:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = sums.sum(axis=0) / positions.sum(axis=0)
            resampled = (weights @ sums) / drawn_positions
        made = []
        for j in np.flatnonzero(answers):
            e = intervals.interval(float(value[j]), resampled[:, j], n)
            made.append({"definition": definition, "t_start": int(edges[j]), "number": number, **e.as_dict()})
            made[-1]["answers"] = int(answers[j])
        return made

    shared = []
    for column, (stat, side) in tables.AVERAGED.items():
        dataset = stat.dataset(side)
        if source.has(dataset):
            shared.append((f"mean_{column}", _per_example_bin(example, bins, n, k, source.read(dataset))))
    found = []
    for definition, category in category_columns.items():
        for c, name in ((2, "share_shifted"), (1, "share_marginal")):
            found += rows(definition, name, _per_example_bin(example, bins, n, k, (category == c) * 1.0))
        for name, sums in shared:
            found += rows(definition, name, sums)
    schema = {"definition": pl.String, "t_start": pl.Int64, "number": pl.String, "value": pl.Float64}
    schema |= {"low": pl.Float64, "high": pl.Float64, "n": pl.Int64, "answers": pl.Int64}
    return pl.DataFrame(found, schema=schema)
