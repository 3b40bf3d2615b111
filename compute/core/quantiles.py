"""Quantiles of a per-position statistic (KL, JS) with cluster-bootstrap intervals over examples.

A quantile is no function of per-example sums, but it is one of per-example counts below thresholds: with
thresholds at the run's own quantiles (a fine grid near each quantile asked for, a coarse one elsewhere),
every resample's cumulative counts are one product `weights @ counts`, and its quantile is read off them,
interpolated linearly inside the (narrow) bin it falls in. The maximum of a resample is the largest
example maximum among the examples it draws.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from compute.core.intervals import LEVEL, Estimate, interval

LEVELS = (0.5, 0.9, 0.99)
COARSE = np.linspace(0.0, 1.0, 11)
WINDOW = 0.03  # fine thresholds within ±WINDOW of each quantile level, STEP apart
STEP = 0.001


def sorted_quantile(ordered: np.ndarray, levels: np.ndarray | float) -> np.ndarray:
    """numpy's linear quantile of already sorted values, at many levels without re-partitioning."""
    position = np.asarray(levels, dtype=np.float64) * (len(ordered) - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, len(ordered) - 1)
    return ordered[below] + (position - below) * (ordered[above] - ordered[below])


def thresholds(ordered: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    fine = [np.arange(q - WINDOW, q + WINDOW + STEP / 2, STEP) for q in levels]
    grid = np.clip(np.concatenate([COARSE, *fine]), 0.0, 1.0)
    return np.unique(sorted_quantile(ordered, np.unique(grid)))


def quantile_estimates(
    values: np.ndarray,
    example: np.ndarray,
    weights: np.ndarray,
    levels: tuple[float, ...] = LEVELS,
    level: float = LEVEL,
) -> dict[str, Estimate]:
    """{"q50": ..., "q90": ..., "q99": ..., "max": ...} of `values` (one per position; `example` says whose),
    each with its interval over the resamples in `weights` (resamples x examples)."""
    n = weights.shape[1]
    names = [f"q{round(100 * q)}" for q in levels] + ["max"]
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {name: Estimate(float("nan"), float("nan"), float("nan"), n) for name in names}
    ordered = np.sort(values)
    below = cumulative_counts(values, example, weights, levels, ordered)
    result = {
        name: interval(float(sorted_quantile(ordered, q)), resampled_quantile(below, q), n, level)
        for name, q in zip(names, levels, strict=False)
    }
    result["max"] = interval(float(values.max()), resampled_max(values, example, weights), n, level)
    return result


def cumulative_counts(
    values: np.ndarray,
    example: np.ndarray,
    weights: np.ndarray,
    levels: tuple[float, ...] = LEVELS,
    ordered: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, per resample the count of drawn values at or below each threshold: resamples x thresholds).
    `ordered`: the values sorted, where the caller has them."""
    n = weights.shape[1]
    edges = thresholds(np.sort(values) if ordered is None else ordered, levels)
    g = len(edges)
    bins = np.searchsorted(edges, values, side="left")  # value <= edges[j] exactly where bins <= j
    counts = np.bincount(example.astype(np.int64) * g + bins, minlength=n * g).reshape(n, g)
    return edges, weights @ np.cumsum(counts, axis=1, dtype=np.float64)


def resampled_quantile(cumulative: tuple[np.ndarray, np.ndarray], q: float) -> np.ndarray:
    """Each resample's q-quantile (numpy's linear method), interpolated inside the threshold bin it falls in."""
    edges, below = cumulative
    drawn = below[:, -1]
    rows = np.arange(len(drawn))
    rank = (drawn - 1) * q + 1  # 1-based fractional rank of the quantile
    j = np.argmax(below >= rank[:, None] - 1e-9, axis=1)
    before = np.where(j > 0, below[rows, j - 1], 0.0)
    inside = below[rows, j] - before
    lower_edge = np.where(j > 0, edges[j - 1], edges[0])
    frac = np.clip((rank - before) / np.maximum(inside, 1), 0.0, 1.0)
    return np.where(drawn > 0, lower_edge + frac * (edges[j] - lower_edge), np.nan)


def resampled_max(values: np.ndarray, example: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each resample's maximum: the largest example maximum among the examples it draws (nan: none drawn)."""
    n = weights.shape[1]
    grouped = pl.DataFrame({"example": example, "value": values}).group_by("example").agg(pl.col("value").max())
    per_example = np.full(n, -np.inf)
    per_example[grouped["example"].to_numpy()] = grouped["value"].to_numpy()
    order = np.argsort(-per_example, kind="stable")
    drawn = (weights > 0)[:, order]
    first = np.argmax(drawn, axis=1)
    best = per_example[order][first]
    return np.where(drawn.any(axis=1) & np.isfinite(best), best, np.nan)
