"""A verifiable task's verdicts over a run's answers (/examples/correct)."""

from __future__ import annotations

from dataclasses import dataclass

from compute.core.artifact.reader import Artifact


@dataclass(frozen=True)
class Judged:
    """A verifiable task's verdicts over a run's answers."""

    task: str  # the judge's name (root attribute `task`)
    right: int
    judged: int  # answers judged (examples/correct is 0 or 1; -1 is not judged)

    @property
    def accuracy(self) -> float | None:
        return self.right / self.judged if self.judged else None


def judged(artifact: Artifact) -> Judged | None:
    """The task's verdicts, or None where the run stores none (no /examples/correct)."""
    if not artifact.has("examples/correct"):
        return None
    correct = artifact.read("examples/correct")
    return Judged(str(artifact.attrs.get("task", "unnamed task")), int((correct == 1).sum()), int((correct >= 0).sum()))
