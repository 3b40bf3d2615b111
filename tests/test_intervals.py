"""The cluster bootstrap: against a slow loop over resamples of examples, and by example, not by position."""

import numpy as np
import pytest

from compute.core import intervals


def _crafted_run(seed=3, n_examples=40):
    """Per-position (example id, shifted 0/1, kl) of a run with examples of uneven length."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, n_examples)
    example = np.repeat(np.arange(n_examples), lengths)
    shifted = (rng.random(example.size) < rng.random(n_examples)[example] * 0.4).astype(float)
    kl = rng.exponential(0.1, example.size) * (1 + example % 3)
    return example, shifted, kl


def _per_example(example, values, n):
    return np.bincount(example, weights=values, minlength=n)


def _slow_share(example, shifted, weights):
    """The obvious bootstrap: build each resample's positions from its examples, count."""
    values = []
    for row in weights:
        drawn = np.repeat(np.arange(row.size), row.astype(int))
        positions = np.concatenate([np.flatnonzero(example == e) for e in drawn])
        values.append(shifted[positions].sum() / positions.size)
    return np.array(values)


def test_ratio_matches_a_loop_over_resampled_examples():
    example, shifted, _ = _crafted_run()
    n = example.max() + 1
    weights = intervals.resample_weights(n, resamples=200, seed=7)
    got = intervals.ratio(_per_example(example, shifted, n), np.bincount(example, minlength=n), weights)
    slow = _slow_share(example, shifted, weights)
    low, high = np.percentile(slow, [2.5, 97.5])
    assert got.value == pytest.approx(shifted.mean(), rel=1e-12)
    assert (got.low, got.high) == pytest.approx((low, high), rel=1e-12)
    assert got.n == n


def test_paired_difference_matches_a_loop_and_uses_the_same_resamples():
    example, shifted, kl = _crafted_run()
    n = example.max() + 1
    other = np.clip(shifted + (np.random.default_rng(1).random(shifted.size) < 0.05), 0, 1)
    weights = intervals.resample_weights(n, resamples=200, seed=2)
    count = np.bincount(example, minlength=n)
    got = intervals.paired_difference(
        _per_example(example, other, n), count, _per_example(example, shifted, n), count, weights
    )
    slow = _slow_share(example, other, weights) - _slow_share(example, shifted, weights)
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(slow, [2.5, 97.5])), rel=1e-9, abs=1e-12)
    unpaired_a = intervals.ratio(_per_example(example, other, n), count, weights)
    unpaired_b = intervals.ratio(_per_example(example, shifted, n), count, intervals.resample_weights(n, 200, seed=9))
    # the two runs move together over examples: pairing cancels that, an unpaired interval would not
    assert got.high - got.low < 0.5 * ((unpaired_a.high - unpaired_a.low) + (unpaired_b.high - unpaired_b.low))


def test_resampling_is_by_example():
    """20 % of positions shifted: all in a fifth of the examples -> wide; spread evenly -> narrow."""
    n, length = 100, 20
    example = np.repeat(np.arange(n), length)
    clustered = (example < 20).astype(float)
    spread = (np.tile(np.arange(length), n) < 4).astype(float)
    count = np.bincount(example)
    weights = intervals.resample_weights(n)
    wide = intervals.ratio(_per_example(example, clustered, n), count, weights)
    narrow = intervals.ratio(_per_example(example, spread, n), count, weights)
    assert wide.value == narrow.value == pytest.approx(0.2)
    assert wide.high - wide.low > 0.1
    assert narrow.high - narrow.low < 0.01


def test_resample_weights_are_seeded_counts_of_every_example():
    w = intervals.resample_weights(50, resamples=30, seed=4)
    assert w.shape == (30, 50)
    assert (w.sum(axis=1) == 50).all() and (w == np.round(w)).all()
    assert (w == intervals.resample_weights(50, resamples=30, seed=4)).all()
    assert (w != intervals.resample_weights(50, resamples=30, seed=5)).any()


def test_statistic_applies_a_function_of_totals():
    example, _, kl = _crafted_run()
    n = example.max() + 1
    weights = intervals.resample_weights(n, resamples=100)
    count = np.bincount(example, minlength=n).astype(float)
    got = intervals.statistic(lambda s, c: np.exp(s / c), (_per_example(example, kl, n), count), weights)
    assert got.value == pytest.approx(np.exp(kl.mean()))
    resampled = np.exp((weights @ _per_example(example, kl, n)) / (weights @ count))
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(resampled, [2.5, 97.5])))


def test_undefined_resamples_are_left_out_and_no_positions_is_nan():
    # one example of 5 has positions in the bucket: resamples without it have no denominator
    num = np.array([1.0, 0, 0, 0, 0])
    den = np.array([2.0, 0, 0, 0, 0])
    got = intervals.ratio(num, den, intervals.resample_weights(5, 200))
    assert got.value == got.low == got.high == 0.5
    none = intervals.ratio(np.zeros(3), np.zeros(3), intervals.resample_weights(3, 10))
    assert np.isnan(none.value) and np.isnan(none.low) and np.isnan(none.high)
