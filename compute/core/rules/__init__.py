"""The decoding rules: one declaration each (compute/core/rules/<rule>.py), and the registry that holds them.

A run's [decoding] table names a rule; `Rule` is that rule with its parameters, ready to decode with. The
decoder (compute/engine/decoding.py) and `tds check` (compute/core/provenance.py) apply each rule through its
declaration: the decoder its `source` or `mixture`, the check its separately written `check`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compute.core.rules.cross_sampling import CROSS_SAMPLING
from compute.core.rules.logit_arithmetic import LOGIT_ARITHMETIC
from compute.core.rules.nudging import NUDGING
from compute.core.rules.prefill import PREFILL
from compute.core.rules.pure import ALIGNED_ALONE, BASE_ALONE
from compute.core.rules.spec import (
    ALIGNED,
    BASE,
    MIXED,
    REQUIRED,
    SIDE_OF,
    SOURCE_OF,
    Key,
    RuleSpec,
    Seen,
    Step,
    params_of,
)

RULES: dict[str, RuleSpec] = {
    spec.name: spec for spec in (ALIGNED_ALONE, BASE_ALONE, NUDGING, CROSS_SAMPLING, LOGIT_ARITHMETIC, PREFILL)
}
PURE_RULES = tuple(name for name, spec in RULES.items() if spec.pure)
MIXED_RULES = tuple(name for name, spec in RULES.items() if not spec.pure)

__all__ = [
    "ALIGNED",
    "BASE",
    "MIXED",
    "MIXED_RULES",
    "PURE_RULES",
    "REQUIRED",
    "RULES",
    "SIDE_OF",
    "SOURCE_OF",
    "Key",
    "Rule",
    "RuleSpec",
    "Seen",
    "Step",
    "params_of",
]


@dataclass(frozen=True)
class Rule:
    """A rule and its parameters (the [decoding] keys, and what its calibration added)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> RuleSpec:
        return RULES[self.name]

    @property
    def counted_side(self) -> int | None:
        """The source code whose share decoding_share reports; None for a pure rule."""
        return self.spec.counted(self.params) if self.spec.counted else None

    @property
    def needs_js(self) -> bool:
        return "js" in self.spec.signals

    def source(self, step: Step) -> int:
        """Whose top-1 token a top-1 rule emits at this step."""
        assert self.spec.source is not None, f"{self.name} decodes from a mixture"
        return self.spec.source(self.params, step)

    def with_params(self, **added: Any) -> Rule:
        return Rule(self.name, {**self.params, **added})

    def attrs(self) -> dict[str, Any]:
        """The artifact's root attributes for this rule (decoding_share is added when the run is done)."""
        return {"decoding": self.name, **{f"decoding_{k}": v for k, v in self.params.items()}}


def describe(attrs: dict[str, Any]) -> str:
    """One line on how a run's answers were decoded, from its root attributes (decoding, decoding_*)."""
    spec = RULES.get(str(attrs["decoding"]))
    if spec is None:
        return f"decoding: {attrs['decoding']} (a rule this version does not know)"
    params = params_of(attrs)
    line = f"decoding: {spec.describe(params)}"
    if "share" in params:
        line += f": {params['share']:.1%} of {spec.counted_as}"
    return line
