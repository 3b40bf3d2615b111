"""Two judged runs over the same problems: the paired accuracy difference and an exact McNemar test.

The difference resamples problems once for both runs (a paired cluster bootstrap); McNemar's exact test
is the two-sided binomial test of the discordant problems (right in one run, wrong in the other) against
an even split, written with math.comb (scipy is not a dependency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compute.core import intervals
from compute.core.intervals import Estimate


@dataclass(frozen=True)
class JudgedPair:
    difference: Estimate  # accuracy a - accuracy b over the problems both judged
    only_a: int  # problems right in a, wrong in b
    only_b: int
    p_value: float  # exact McNemar, two-sided


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: P(a split of the discordant pairs at least this uneven | p = 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def judged_pair(
    ids_a: list[str], correct_a: np.ndarray, ids_b: list[str], correct_b: np.ndarray, weights_seed: int = 0
) -> JudgedPair | None:
    """The paired comparison over the problems (example ids) both runs judged; None where they share none."""
    where_b = {example_id: i for i, example_id in enumerate(ids_b)}
    pairs = [(i, where_b[x]) for i, x in enumerate(ids_a) if x in where_b]
    pairs = [(i, j) for i, j in pairs if correct_a[i] >= 0 and correct_b[j] >= 0]
    if not pairs:
        return None
    a = np.array([correct_a[i] for i, _ in pairs], dtype=np.float64)
    b = np.array([correct_b[j] for _, j in pairs], dtype=np.float64)
    ones = np.ones_like(a)
    weights = intervals.resample_weights(len(a), seed=weights_seed)
    difference = intervals.paired_difference(a, ones, b, ones, weights)
    only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    return JudgedPair(difference, only_a, only_b, mcnemar_exact(only_a, only_b))
