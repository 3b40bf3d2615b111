"""Which runs share answers, for Compare and Stages: computed once per server for a set of runs (keyed by their
files' identities), not once per viewer."""

from __future__ import annotations

from dashboard import load, stats
from dashboard.cache import cached


@cached
def pairs(keys: tuple[load.RunKey, ...]) -> list[tuple[int, int, int]]:
    """stats.shared_answers over the runs `keys` (each run's answer set read once per server)."""
    return stats.shared_answers([load.answer_set(key) for key in keys])


@cached
def groups(keys: tuple[load.RunKey, ...]) -> list[tuple[tuple[int, ...], int]]:
    """stats.answer_groups over the runs `keys`."""
    return stats.answer_groups([load.answer_set(key) for key in keys])
