"""Many runs in the sidebar: groups (name prefix, pair of sides, `tags` attribute) and a search over labels.

Pure functions over the listed runs; the sidebar in app.py draws them.
"""

from __future__ import annotations

import re

from dashboard.labels import pair, printable

ALL = "all runs"
_PREFIX = re.compile(r"[-_.\s]")


def prefix(name: str) -> str:
    """A run name's first part: "gemma-270m-urial" -> "gemma", "ckpt_1000" -> "ckpt"."""
    return _PREFIX.split(name.strip(), maxsplit=1)[0] or name


def tags(attrs: dict[str, object]) -> list[str]:
    """The run's `tags` root attribute: a comma-separated string or a list of strings."""
    value = attrs.get("tags")
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]  # type: ignore[union-attr]
    return [printable(item.strip()) for item in items if item.strip()]


def groups(runs: list[tuple[str, str, dict[str, dict[str, object]], dict[str, object]]]) -> dict[str, list[str]]:
    """Group name -> the labels in it, for (label, run name, side attributes, root attributes) of every run:
    all runs first, then each name prefix, pair and tag that more than one run shares (or any tag)."""
    found: dict[str, list[str]] = {ALL: [label for label, _, _, _ in runs]}
    for label, name, sides, attrs in runs:
        keys = [f"name: {printable(prefix(name))}…", f"pair: {pair(sides)}", *(f"tag: {t}" for t in tags(attrs))]
        for key in keys:
            found.setdefault(key, []).append(label)
    return {key: labels for key, labels in found.items() if key == ALL or key.startswith("tag:") or len(labels) > 1}


def matching(labels: list[str], query: str) -> list[str]:
    """The labels containing every word of `query` (any case)."""
    words = query.lower().split()
    return [label for label in labels if all(word in label.lower() for word in words)]
