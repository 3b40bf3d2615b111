"""Progress and notes of a run, one line each on stderr (stdout is left for the summary lines)."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
