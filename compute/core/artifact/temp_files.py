"""The temp files that killed writes leave beside their target (write_artifact writes through one)."""

from __future__ import annotations

import re
from pathlib import Path

_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")  # write_artifact's: mkstemp's 8 random characters


def left_temp_files(folder: Path, target: str | None = None) -> list[Path]:
    """The temp files killed writes left in `folder`: those of the file named `target` only (compared as a
    string, never as a pattern), or of any target when None."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _TEMP_NAME.fullmatch(path.name)
        if match and (target is None or match["target"] == target) and path.is_file():
            found.append(path)
    return sorted(found)
