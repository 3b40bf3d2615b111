"""Shards for job arrays: `tds run RUN.toml --shard I/N` runs the I-th of N shares of a run, no rendezvous.

I counts from 1 (`--shard 1/4` .. `--shard 4/4`; with SLURM, `--array=1-4` and
`--shard $SLURM_ARRAY_TASK_ID/4`). A share is a set of whole batches: the run's
batches are made over every example exactly as a one-process run makes them,
then dealt to the shards longest first, each to the lightest so far. A shard
therefore scores the very batches a one-process run would, and the merged
artifact equals a one-process run's number for number.

Shards write into the run's partial work (out_dir/.NAME.partial/) and no
artifact; the folder's `shards` file records N and the number of examples, so
every shard and the final run (the same command without --shard) agree on the
shares. Each shard holds its own lock (out_dir/.NAME.shard-I-of-N.lock), so
shards run at once, in any order, and a retried shard redoes only what it lacks.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from compute.core.errors import UserError
from compute.core.lock import RunLock

RECORD = "shards"


class ShardError(UserError):
    """A bad --shard value, or shards that disagree with the partial work; one line."""


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`I/N` with 1 <= I <= N, or ShardError naming the option."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ShardError(f"--shard {text!r}: expected I/N, e.g. 1/4 (I counts from 1)")
        index, count = int(match[1]), int(match[2])
        if count < 1 or not 1 <= index <= count:
            raise ShardError(f"--shard {text}: I must be between 1 and N (shards count from 1: 1/{max(count, 1)})")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def lock_path(self, out_dir: Path, name: str) -> Path:
        return out_dir / f".{name}.shard-{self.index}-of-{self.count}.lock"


def shard_lock_paths(out_dir: Path, name: str) -> list[Path]:
    """The lock files of any shard of a run (live or left by a dead one)."""
    return sorted(out_dir.glob(f".{name}.shard-*-of-*.lock"))


def deal(batch_costs: list[int], count: int) -> list[list[int]]:
    """Batch positions per shard (0-based shard list): costliest first, each to the least loaded shard."""
    totals = [0] * count
    shares: list[list[int]] = [[] for _ in range(count)]
    for position in sorted(range(len(batch_costs)), key=lambda b: (-batch_costs[b], b)):
        target = min(range(count), key=lambda s: (totals[s], s))
        totals[target] += batch_costs[position]
        shares[target].append(position)
    return [sorted(share) for share in shares]


def record(folder: Path, count: int, n_examples: int) -> None:
    """Write the folder's shard record, or refuse shards of another N or another example count."""
    line = f"{count} shards over {n_examples} examples"
    path = folder / RECORD
    if path.exists():
        recorded = path.read_text().strip()
        if recorded != line:
            raise ShardError(
                f"{folder}: its partial work is from {recorded}, not {line}; use the same N and --limit "
                f"for every shard, or delete the folder to start over"
            )
        return
    tmp = folder / f".{RECORD}.{os.getpid()}.tmp"
    tmp.write_text(line + "\n")
    os.replace(tmp, path)  # shards starting at once write the same line


def recorded(folder: Path) -> tuple[int, int] | None:
    """(N, examples) of the shards that wrote into this partial work, or None when none did."""
    path = folder / RECORD
    if not path.exists():
        return None
    words = path.read_text().split()
    return int(words[0]), int(words[3])


def check_idle(path: Path, name: str) -> None:
    """LockError (one line, with the pid) when a live process holds the lock at `path`; a dead one's file goes."""
    probe = RunLock(path, name)
    probe.acquire()
    probe.release()


def check_no_live_shards(out_dir: Path, name: str) -> None:
    """Refuse to run NAME as one process while one of its shards runs."""
    for path in shard_lock_paths(out_dir, name):
        index, count = re.search(r"shard-(\d+)-of-(\d+)\.lock$", path.name).groups()
        check_idle(path, f"{name} (shard {index}/{count})")
