"""The runs the dashboard opens on: a curated set the artifacts folder declares, or a fallback.

An artifacts folder declares its featured runs in `featured.txt` (one run name a line, in the order to show
them; `#` starts a comment), or by giving runs the tag "featured" (`tags = ["featured"]` in the config). A folder
with neither opens on its teacher-forced runs before the mixed-decoding ones, by file name. Pure functions; the
sidebar in app.py applies them.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

FILE = "featured.txt"
TAG = "featured"
MAX_DEFAULT = 8  # runs picked by the fallback


class Listed(NamedTuple):
    """What the default pick needs of one run."""

    label: str
    name: str
    tags: list[str]
    decoded: bool  # decoded by both sides together (a `[decoding]` run): shown whole on the Experiments page


def declared(directory: Path) -> list[str] | None:
    """The run names `directory/featured.txt` lists, or None where the folder has no such file (or it cannot be
    read: the fallback then applies)."""
    try:
        text = (directory / FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [name for name in names if name]


def default_pick(runs: list[Listed], names: list[str] | None) -> tuple[list[str], str]:
    """The labels to open on and why, in a few words: the runs `names` lists (in its order), else those tagged
    "featured", else up to MAX_DEFAULT runs, teacher-forced ones before mixed-decoding ones (in `runs`' order)."""
    if names:
        picked = [run.label for name in dict.fromkeys(names) for run in runs if run.name == name]
        if picked:
            return picked, f"the runs {FILE} lists"
    tagged = [run.label for run in runs if TAG in run.tags]
    if tagged:
        return tagged, f"the runs tagged “{TAG}”"
    first = {run.label for run in sorted(runs, key=lambda run: run.decoded)[:MAX_DEFAULT]}
    return [run.label for run in runs if run.label in first], "teacher-forced runs first, by file name"
