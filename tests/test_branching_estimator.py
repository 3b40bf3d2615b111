"""The BF paper's estimator on hand-made samples whose branching factor is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compute.core.branching import (
    ExampleSamples,
    branching_curve,
    branching_factor,
    log_branching_factor,
    position_means,
    run_branching_factor,
    usable_length,
)


def uniform(m: int, lengths: list[int]) -> ExampleSamples:
    """Samples from a uniform distribution over m tokens: entropy ln m, truncated log-prob -ln m at every step."""
    return ExampleSamples.from_lists(
        [[math.log(m)] * n for n in lengths],
        [[7] * n for n in lengths],
        [[-math.log(m)] * n for n in lengths],
    )


def test_uniform_over_m_tokens_has_bf_m():
    assert branching_factor(uniform(5, [10] * 8)) == pytest.approx(5)
    assert branching_factor(uniform(1, [10] * 8)) == pytest.approx(1)


def test_long_outputs_use_the_aep_estimator_not_the_entropy():
    # 60 positions (> 50): log BF comes from the log-probs (ln 3), not from the entropies (ln 5)
    samples = ExampleSamples.from_lists([[math.log(5)] * 60] * 8, [[1] * 60] * 8, [[-math.log(3)] * 60] * 8)
    assert branching_factor(samples) == pytest.approx(3)
    # 50 positions: the entropies (ln 5)
    samples = ExampleSamples.from_lists([[math.log(5)] * 50] * 8, [[1] * 50] * 8, [[-math.log(3)] * 50] * 8)
    assert branching_factor(samples) == pytest.approx(5)


def test_aep_averages_each_sample_over_the_used_length():
    # two groups of 4 samples, each 60 long; per-token log-prob -1 and -3 in the first 55 steps, 0 after
    logprob = [[-1.0] * 55 + [0.0] * 5] * 4 + [[-3.0] * 55 + [0.0] * 5] * 4
    samples = ExampleSamples.from_lists([[0.5] * 60] * 8, [[1] * 60] * 8, logprob)
    # usable length: int(quantile(60, .95)) = 60 -> mean per sample -(55 * c) / 60, then mean over samples
    assert log_branching_factor(samples) == pytest.approx((55 * 1 / 60 + 55 * 3 / 60) / 2)


def test_positions_reached_by_three_or_fewer_samples_end_the_estimate():
    # 4 samples of 30 steps with entropy ln 2, then 3 samples run on to 40 with entropy ln 100
    lengths = [30] * 4 + [40] * 3 + [1]
    entropy = [[math.log(2)] * 30] * 4 + [[math.log(2)] * 30 + [math.log(100)] * 10] * 3 + [[math.log(2)]]
    samples = ExampleSamples.from_lists(entropy, [[0] * n for n in lengths], [[0.0] * n for n in lengths])
    assert usable_length(lengths) == 30  # position 30 is reached by only 3 samples
    assert branching_factor(samples) == pytest.approx(2)


def test_positions_past_the_95th_percentile_length_are_not_used():
    # 96 samples of 10 steps (ln 2) and 4 of 40 steps with ln 50 after step 10: 4 samples reach positions 10-39,
    # enough for the 3-or-fewer rule, but they lie past the 95th-percentile length
    lengths = [10] * 96 + [40] * 4
    assert usable_length(lengths) == int(np.quantile(lengths, 0.95)) == 10
    entropy = [[math.log(2)] * 10] * 96 + [[math.log(2)] * 10 + [math.log(50)] * 30] * 4
    samples = ExampleSamples.from_lists(entropy, [[0] * n for n in lengths], [[0.0] * n for n in lengths])
    assert branching_factor(samples) == pytest.approx(2)
    # the percentile interpolates and is truncated: 15 x 10, 4 x 14 and one 30 give int(14.8) = 14
    assert usable_length([10] * 15 + [14] * 4 + [30]) == 14


def test_per_position_mean_is_over_the_samples_reaching_it():
    # 4 samples of length 3 (entropy 1.0), 4 of length 5 (entropy 3.0): positions 3-4 average only the long ones
    entropy = [[1.0] * 3] * 4 + [[3.0] * 5] * 4
    samples = ExampleSamples.from_lists(entropy, [[0] * len(e) for e in entropy], [[0.0] * len(e) for e in entropy])
    assert position_means(samples.split(samples.entropy)) == pytest.approx([2.0, 2.0, 2.0, 3.0, 3.0])
    assert log_branching_factor(samples) == pytest.approx((2 + 2 + 2 + 3 + 3) / 5)


def test_an_example_without_a_usable_position_has_no_bf_and_the_run_skips_it():
    assert math.isnan(branching_factor(uniform(4, [5, 5, 5])))  # only 3 samples
    assert math.isnan(branching_factor(uniform(4, [0] * 8)))  # every sample ended at once
    assert run_branching_factor([uniform(4, [5, 5, 5]), uniform(2, [5] * 8), uniform(6, [5] * 8)]) == pytest.approx(4)


def test_run_bf_is_the_mean_of_exp_not_exp_of_the_mean():
    assert run_branching_factor([uniform(2, [8] * 6), uniform(8, [8] * 6)]) == pytest.approx(5)


def test_curve_averages_per_position_bf_over_the_examples_having_the_position():
    short, long = uniform(2, [3] * 6), uniform(6, [5] * 6)
    assert branching_curve([short, long]) == pytest.approx([4, 4, 4, 6, 6])
    assert len(branching_curve([])) == 0


def test_aep_uses_only_the_samples_that_reach_the_last_used_position():
    # 8 samples of 60 steps at log-prob -1, 4 samples ending at 55 steps at log-prob -5: only the long ones count
    lengths = [60] * 8 + [55] * 4
    logprob = [[-1.0] * 60] * 8 + [[-5.0] * 55] * 4
    samples = ExampleSamples.from_lists([[0.1] * n for n in lengths], [[0] * n for n in lengths], logprob)
    assert usable_length(lengths) == 60
    assert branching_factor(samples) == pytest.approx(math.e)


def test_branching_estimates_resample_examples_for_both_sides_together():
    from compute.core import intervals
    from compute.core.branching import branching_estimates

    aligned = [uniform(m, [6] * 8) for m in (2, 3, 4, 2, 5)]
    base = [uniform(m, [6] * 8) for m in (8, 9, 30, 10, 12)]
    base[3] = uniform(10, [6] * 3)  # no usable position: left out of the base side's mean
    weights = intervals.resample_weights(5, resamples=300, seed=3)
    got = branching_estimates(aligned, base, weights)
    assert got["bf_aligned"].value == pytest.approx(run_branching_factor(aligned))
    assert got["bf_base"].value == pytest.approx(run_branching_factor(base))
    assert got["bf_ratio"].value == pytest.approx(run_branching_factor(base) / run_branching_factor(aligned))
    slow = []
    for row in weights:
        drawn = np.repeat(np.arange(5), row.astype(int))
        slow.append(run_branching_factor([base[i] for i in drawn]) / run_branching_factor([aligned[i] for i in drawn]))
    low, high = np.nanpercentile(np.array(slow), [2.5, 97.5])
    assert (got["bf_ratio"].low, got["bf_ratio"].high) == pytest.approx((low, high))
