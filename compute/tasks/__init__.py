"""Tasks whose answers can be judged exactly, by name: a run's `task` key picks the judge."""

from collections.abc import Callable

from compute.tasks import arithmetic

JUDGES: dict[str, Callable[[str, str], bool]] = {"arithmetic": arithmetic.is_correct}
"""Task name -> judge(response, reference): True when the response is right."""
REFERENCE_CHECKS: dict[str, Callable[[str], str | None]] = {"arithmetic": arithmetic.reference_problem}
"""Task name -> what is wrong with a reference its judge cannot use (None when it can)."""


def judge(task: str, response: str, reference: str | None) -> int:
    """1 right, 0 wrong, -1 not judged (no reference), as /examples/correct stores it."""
    if reference is None:
        return -1
    return int(JUDGES[task](response, reference))
