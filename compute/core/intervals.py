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

    float64 (the counts are whole numbers) so that `weights @ sums` is one BLAS product."""
    if n_examples == 0:
        return np.zeros((resamples, 0))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_examples, np.full(n_examples, 1.0 / n_examples), size=resamples)
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
    return statistic(_divide, (numerator, denominator), weights, level)


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
        lambda na, da, nb, db: _divide(na, da) - _divide(nb, db), (num_a, den_a, num_b, den_b), weights, level
    )


def paired(
    fn: Callable[..., np.ndarray | float],
    sums_a: Sequence[np.ndarray],
    sums_b: Sequence[np.ndarray],
    weights: np.ndarray,
    level: float = LEVEL,
) -> Estimate:
    """fn(*totals_a) - fn(*totals_b) on the same resamples of the (shared) examples."""
    k = len(sums_a)
    return statistic(lambda *t: fn(*t[:k]) - fn(*t[k:]), (*sums_a, *sums_b), weights, level)


def _values(fn: Callable[..., np.ndarray | float], sums: Sequence[np.ndarray], weights: np.ndarray):
    columns = np.column_stack([np.asarray(s, dtype=np.float64) for s in sums]) if len(sums) else None
    if columns is None or columns.shape[0] == 0:
        nan = np.full(weights.shape[0], np.nan)
        return float("nan"), nan
    totals = columns.sum(axis=0)
    resampled = weights @ columns  # (resamples, columns): every resample's totals in one product
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        value = float(fn(*totals))
        values = np.asarray(fn(*resampled.T), dtype=np.float64)
    return value, values


def _divide(numerator, denominator) -> np.ndarray:
    """numerator / denominator, nan where the denominator is 0 (a number with no positions under it)."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, float), np.asarray(denominator, float))
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out
