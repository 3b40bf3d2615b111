"""One run of a name at a time: a lock file beside the run's partial work.

out_dir/.NAME.lock holds the pid of the run that has it locked (flock). The
kernel drops the lock when that process dies, however it dies, so the file of a
dead run is simply taken over by the next one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from compute.core.errors import UserError


class LockError(UserError):
    """Another live run holds the lock; one line naming it and its pid."""


class RunLock:
    def __init__(self, path: Path, name: str):
        self.path = path
        self.name = name
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise LockError(f"another run of {self.name} is in progress (pid {holder})") from None
            if self._is_current(fd):
                break
            os.close(fd)  # the run that held it removed the file meanwhile: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _is_current(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # out_dir turned read-only: the file stays, and the next run takes it over
        os.close(self._fd)
        self._fd = None
