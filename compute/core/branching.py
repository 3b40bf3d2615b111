"""The branching factor of Yang & Holtzman ("How Alignment Shrinks the Generative Horizon"), from stored samples.

Imports only numpy, so the dashboard can use it. The estimator follows the
paper's code (LLMBranchingFactor: `condense_arrays_with_inconsistent_lengths`
and `compute_bf_values`): for one example, per position t the mean over the
samples that reach t, for t below the 95th-percentile sample length, stopping
at the first t that 3 or fewer samples reach. If that leaves more than 50
positions, log BF is the mean negative truncated log-likelihood per token of
the samples that reach the last position (the AEP estimator); otherwise it is
the mean of the per-position mean entropies. An example's BF is exp(log BF);
a run's BF is the mean over examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compute.core import intervals
from compute.core.intervals import Estimate

LENGTH_QUANTILE = 0.95  # positions beyond the 95th-percentile sample length are not used
MIN_SAMPLES = 4  # a position reached by 3 or fewer samples ends the estimate
AEP_MIN_LENGTH = 51  # more than 50 positions: use the AEP (log-likelihood) estimator


@dataclass
class ExampleSamples:
    """One side's n samples for one example; sample s is rows offsets[s]:offsets[s+1] of the flat arrays."""

    offsets: np.ndarray  # (n+1,) int64
    entropy: np.ndarray  # (S,) float32, truncated entropy at each sampled step, nats
    token_id: np.ndarray  # (S,) int32, the sampled tokens
    logprob: np.ndarray  # (S,) float32, truncated log-probability of each sampled token

    @classmethod
    def from_lists(cls, entropy: list[list[float]], token_id: list[list[int]], logprob: list[list[float]]):
        """Samples given as one list per sample."""
        lengths = [len(e) for e in entropy]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

        def flat(rows: list, dtype) -> np.ndarray:
            return np.concatenate([np.asarray(r, dtype=dtype) for r in rows]) if rows else np.zeros(0, dtype)

        return cls(offsets, flat(entropy, np.float32), flat(token_id, np.int32), flat(logprob, np.float32))

    @property
    def n(self) -> int:
        return len(self.offsets) - 1

    def split(self, values: np.ndarray) -> list[np.ndarray]:
        """A flat per-step array cut into one array per sample."""
        return [values[self.offsets[s] : self.offsets[s + 1]] for s in range(self.n)]


def usable_length(lengths: list[int]) -> int:
    """How many positions the estimate uses: below the 95th-percentile length, each reached by 4+ samples."""
    if not lengths:
        return 0
    cut = int(np.quantile(lengths, LENGTH_QUANTILE))
    reached = np.array([sum(n > t for n in lengths) for t in range(cut)], dtype=np.int64)
    too_few = np.flatnonzero(reached < MIN_SAMPLES)
    return int(too_few[0]) if len(too_few) else cut


def position_means(samples: list[np.ndarray]) -> np.ndarray:
    """Per position, the mean over the samples that reach it, for the usable positions."""
    length = usable_length([len(s) for s in samples])
    return np.array([np.mean([s[t] for s in samples if len(s) > t]) for t in range(length)], dtype=np.float64)


def mean_prefix_logprob(samples: list[np.ndarray], length: int) -> float:
    """Mean over the samples reaching `length` positions of their mean log-prob over those positions."""
    return float(np.mean([np.mean(s[:length], dtype=np.float64) for s in samples if len(s) >= length]))


def log_branching_factor(example: ExampleSamples) -> float:
    """log BF of one example; NaN when no position is reached by 4 or more samples."""
    entropy = position_means(example.split(example.entropy))
    if len(entropy) == 0:
        return float("nan")
    if len(entropy) >= AEP_MIN_LENGTH:
        return -mean_prefix_logprob(example.split(example.logprob), len(entropy))
    return float(entropy.mean())


def branching_factor(example: ExampleSamples) -> float:
    return float(np.exp(log_branching_factor(example)))


def run_branching_factor(examples: list[ExampleSamples]) -> float:
    """Mean BF over the examples that have one (NaN when none has)."""
    values = np.array([branching_factor(e) for e in examples])
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def branching_curve(examples: list[ExampleSamples]) -> np.ndarray:
    """BF vs position: at each t, the mean over examples of exp(mean truncated entropy at t).

    An example contributes to its usable positions only; the curve ends where no example has t.
    """
    per_example = [np.exp(position_means(e.split(e.entropy))) for e in examples]
    length = max((len(c) for c in per_example), default=0)
    return np.array(
        [np.mean([c[t] for c in per_example if len(c) > t]) for t in range(length)],
        dtype=np.float64,
    )


def branching_estimates(
    aligned: list[ExampleSamples], base: list[ExampleSamples], weights: np.ndarray
) -> dict[str, Estimate]:
    """The run's BF per side and base / aligned, each with its interval over the resamples of examples in
    `weights` (the same resamples for both sides: the ratio's interval is paired)."""
    sums = []
    for side in (aligned, base):
        values = np.array([branching_factor(e) for e in side])
        finite = np.isfinite(values)
        sums += [np.where(finite, values, 0.0), finite.astype(np.float64)]
    bf_aligned = intervals.statistic(intervals.divide, sums[:2], weights)
    bf_base = intervals.statistic(intervals.divide, sums[2:], weights)
    ratio = intervals.statistic(lambda a, na, b, nb: intervals.divide(b * na, nb * a), sums, weights)
    return {"bf_aligned": bf_aligned, "bf_base": bf_base, "bf_ratio": ratio}
