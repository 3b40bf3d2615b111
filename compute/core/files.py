"""The one atomic writer: bytes to a hidden temp file beside the target, fsync'd, then moved into place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_atomically(path: Path, data: bytes | memoryview, replace: bool) -> None:
    """Write `data` to `path` all at once or not at all: a temp file `.NAME.*.tmp` in the same folder, mode
    0644 less the umask, then renamed over `path` (`replace`) or linked to it, which fails with
    FileExistsError if `path` appeared meanwhile (never clobbered). No temp file is left, whatever fails;
    OSErrors reach the caller, who says them in one line."""
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        with open(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644 & ~umask())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
