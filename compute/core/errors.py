"""The one base class of faults a user can cause or fix, and the exit statuses of the CLI.

Every module raises its own subclass (ConfigError, DatasetError, ...) with a
one-line message naming the file, field or option; `compute.cli` is the
only place that turns one into `error: <line>` on stderr and EXIT_BAD_INPUT.
This module imports nothing, so the dashboard's reader can use it too.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_MISMATCHES = 1  # `check` re-scored and found numbers that differ
EXIT_BAD_INPUT = 2  # bad input or environment: one line on stderr
EXIT_BUG = 3  # an unexpected error: the traceback is printed
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM


def one_line(err: BaseException) -> str:
    """An exception's message as one line: its first non-blank line, spaces collapsed (its type's name where
    it has no message). Libraries' multi-line messages put the reason first and advice after."""
    lines = [" ".join(line.split()) for line in str(err).splitlines()]
    return next((line for line in lines if line), type(err).__name__)


class UserError(Exception):
    """A fault the user can fix; str(err) is one line saying what and where."""

    def __str__(self) -> str:
        return " ".join(super().__str__().split())
