"""KL/JS quantiles with intervals: the binned resampling against numpy's quantile of each resample's positions."""

import numpy as np
import pytest

from compute.core import intervals, quantiles


def _run(seed=0, n=60):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 80, n)
    example = np.repeat(np.arange(n), lengths)
    values = rng.exponential(rng.uniform(0.01, 1.0, n)[example])
    return example, values


def test_quantiles_match_numpy_on_each_resample_of_examples():
    example, values = _run()
    weights = intervals.resample_weights(60, resamples=100, seed=1)
    got = quantiles.quantile_estimates(values, example, weights)
    cumulative = quantiles.cumulative_counts(values, example, weights)
    resampled = [
        np.concatenate([values[example == e] for e in np.repeat(np.arange(60), r.astype(int))]) for r in weights
    ]
    for name, q in (("q50", 0.5), ("q90", 0.9), ("q99", 0.99)):
        slow = np.array([np.quantile(drawn, q) for drawn in resampled])
        spread = np.quantile(values, min(q + 0.005, 1)) - np.quantile(values, q - 0.005)  # a 1 % band of levels
        assert np.abs(quantiles.resampled_quantile(cumulative, q) - slow).max() < spread, name
        low, high = np.percentile(slow, [2.5, 97.5])
        assert got[name].value == pytest.approx(np.quantile(values, q))
        assert abs(got[name].low - low) < spread and abs(got[name].high - high) < spread, name
    slow_max = [max(values[example == e].max() for e in np.flatnonzero(row)) for row in weights]
    assert (got["max"].low, got["max"].high) == pytest.approx(tuple(np.percentile(slow_max, [2.5, 97.5])))
    assert got["max"].value == values.max() and got["q50"].n == 60


def test_quantiles_of_clustered_values_get_wide_intervals():
    n, length = 100, 30
    example = np.repeat(np.arange(n), length)
    weights = intervals.resample_weights(n)
    clustered = np.where(example < 50, 1.0, 2.0) + np.tile(np.linspace(0, 0.01, length), n)
    spread = np.where(np.tile(np.arange(length), n) < 15, 1.0, 2.0) + np.tile(np.linspace(0, 0.01, length), n)
    wide = quantiles.quantile_estimates(clustered, example, weights)["q50"]
    narrow = quantiles.quantile_estimates(spread, example, weights)["q50"]
    assert wide.high - wide.low > 0.5
    assert narrow.high - narrow.low < 0.05
