"""How a run's answers were decoded (root attribute `decoding`): one side alone, or both sides stepping together
under a rule of the registry (compute/core/rules/; `positions/source` says whose token each was). "greedy" is the
shared design notes' name for a file without the attribute."""

from __future__ import annotations

from compute.core import rules
from compute.core.artifact.reader import Artifact


def decoding(artifact: Artifact) -> tuple[str, dict[str, object]]:
    """The decoding rule and its parameters (the root attributes `decoding_*`, without the prefix). A file
    without the attribute holds the aligned side's own answers, or answers given: rule "aligned"."""
    rule = str(artifact.attrs.get("decoding", "aligned"))
    return ("aligned" if rule == "greedy" else rule), rules.params_of(artifact.attrs)
