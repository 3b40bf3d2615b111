"""Cluster-bootstrap intervals over examples, computed from per-example sums.

The unit of resampling is the example (one answer): positions inside an answer are
correlated, so resampling positions would understate the spread. A resample is a row of
multinomial counts over the examples; any number that is a function of sums over positions
(a share, a mean, exp of a mean entropy, a ratio of two of them) is then that function of
`weights @ per_example_sums`, one matrix product for every resample at once.

numpy only: the dashboard and `compute report` use it without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float  # the number on all examples
    low: float  # percentile interval bound (95 % by default)
    high: float
    n: int  # the number of examples (clusters) it rests on

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def resample_weights(n_examples: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, n_examples) multinomial counts: each row one bootstrap resample of the examples.

    Each row draws n_examples examples uniformly with replacement and counts them (a multinomial draw, made as
    one bincount for all rows). float64 (the counts are whole numbers) so that `weights @ sums` is one BLAS
    product."""
    if n_examples == 0:
        return np.zeros((resamples, 0))
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_examples, size=(resamples, n_examples), dtype=np.int64)
    drawn += np.arange(resamples, dtype=np.int64)[:, None] * n_examples
    counts = np.bincount(drawn.ravel(), minlength=resamples * n_examples).reshape(resamples, n_examples)
    return counts.astype(np.float64)


def interval(value: float, resampled: np.ndarray, n: int, level: float = LEVEL) -> Estimate:
    """The percentile interval of `resampled` (one number per resample) around `value`.

    Resamples where the number is undefined (nan: say, no position of a bucket drawn) are left
    out; if none is defined, the bounds are nan."""
    resampled = np.asarray(resampled, dtype=np.float64)
    finite = resampled[np.isfinite(resampled)]
    if not np.isfinite(value) or finite.size == 0:
        return Estimate(float(value), float("nan"), float("nan"), n)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return Estimate(float(value), float(low), float(high), n)


def statistic(
    fn: Callable[..., np.ndarray | float],
    sums: Sequence[np.ndarray],
    weights: np.ndarray,
    level: float = LEVEL,
) -> Estimate:
    """fn(*totals) with its interval: `sums` are per-example arrays, fn receives their totals over
    all examples (floats), then over every resample (arrays, one entry per resample)."""
    value, resampled = _values(fn, sums, weights)
    return interval(value, resampled, weights.shape[1], level)


def ratio(numerator: np.ndarray, denominator: np.ndarray, weights: np.ndarray, level: float = LEVEL) -> Estimate:
    """sum(numerator) / sum(denominator) over examples (per-example sums), with its cluster-bootstrap interval."""
    return statistic(divide, (numerator, denominator), weights, level)


def paired_difference(
    num_a: np.ndarray,
    den_a: np.ndarray,
    num_b: np.ndarray,
    den_b: np.ndarray,
    weights: np.ndarray,
    level: float = LEVEL,
) -> Estimate:
    """ratio(a) - ratio(b), both computed on the SAME resamples (rows of weights): a paired interval."""
    return statistic(
        lambda na, da, nb, db: divide(na, da) - divide(nb, db), (num_a, den_a, num_b, den_b), weights, level
    )


def totals(sums: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column totals of a per-example matrix (examples x columns) over all examples, and over every resample
    (resamples x columns): one matrix product for all of a run's numbers."""
    sums = np.asarray(sums, dtype=np.float64)
    return sums.sum(axis=0), weights @ sums


def apply(fn: Callable[..., np.ndarray | float], full: Sequence[float], resampled: Sequence[np.ndarray]):
    """fn on the totals over all examples and on every resample's totals: (value, one value per resample)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return float(fn(*full)), np.asarray(fn(*resampled), dtype=np.float64)


def _values(fn: Callable[..., np.ndarray | float], sums: Sequence[np.ndarray], weights: np.ndarray):
    if len(sums) == 0 or weights.shape[1] == 0:
        return float("nan"), np.full(weights.shape[0], np.nan)
    full, resampled = totals(np.column_stack(sums), weights)
    return apply(fn, full, resampled.T)


def divide(numerator, denominator) -> np.ndarray:
    """numerator / denominator, nan where the denominator is 0 (a number with no positions under it)."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, float), np.asarray(denominator, float))
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out
