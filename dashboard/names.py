"""Short display names for runs in charts: a run's stored `short_name`, else its name without the start that most
of the runs shown share (gemma-270m-sft-vs-base beside gemma-270m-dpo-vs-sft -> sft-vs-base), cut to
MAX_WIDTH characters and made unique. Long identities (the run's label) go in hover text and tables.

Pure functions; no Streamlit here.
"""

from __future__ import annotations

from collections import Counter

from dashboard.labels import printable

MAX_WIDTH = 28
SEPARATORS = "-_. "


def _prefixes(name: str) -> list[str]:
    """The name's starts that end with a separator and leave something after them, longest first."""
    return [name[: i + 1] for i in range(len(name) - 2, -1, -1) if name[i] in SEPARATORS]


def shared_start(names: list[str]) -> str:
    """The longest start (ending with a separator) that more than half of `names`, and at least two, share."""
    counts = Counter(prefix for name in set(names) for prefix in _prefixes(name))
    least = max(2, len(set(names)) // 2 + 1)
    found = [prefix for prefix, n in counts.items() if n >= least]
    return max(found, key=len, default="")


def _cut(name: str) -> str:
    """At most MAX_WIDTH characters: the start and the end, joined by an ellipsis."""
    if len(name) <= MAX_WIDTH:
        return name
    head = (MAX_WIDTH - 1) // 2
    return name[:head] + "…" + name[-(MAX_WIDTH - 1 - head) :]


def short_names(runs: list[tuple[str, str | None]]) -> list[str]:
    """One display name per (run name, stored short_name or None), unique among `runs`: the stored short name where
    there is one, else the run name without the start most of the names share; ` (2)`, ` (3)` ... on repeats."""
    start = shared_start([name for name, short in runs if not short])
    names = [
        printable(short) if short else _cut(printable(name.removeprefix(start) if name != start else name))
        for name, short in runs
    ]
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if names.count(name) == 1 else f"{name} ({seen[name]})")
    return unique
