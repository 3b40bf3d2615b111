"""Names of the format that the writer, the checks and the readers share (docs/artifact-format.md)."""

from __future__ import annotations

FORMAT = "tds-artifact"
FORMAT_VERSION = 1
NUL_STANDIN = "\u2400"  # HDF5 strings cannot hold NUL

EXAMPLE_ROWS = ("examples/id", "examples/prompt", "examples/response")
POSITION_ROWS = ("positions/example", "positions/t", "positions/token_id")
OPTIONAL_EXAMPLE_ROWS = ("examples/index", "examples/reference", "examples/correct")
SIDE_ATTRS = ("model", "template", "dtype")
BRANCHING_ROWS = ("entropy", "token_id", "logprob")


def attribute_value(value: object) -> object:
    """An HDF5 attribute as Python reads it: bytes decoded to str, anything else as stored."""
    return value.decode() if isinstance(value, bytes) else value
