"""One side decodes alone: `aligned` (what a run without [decoding] does) and `base` (the "base alone" baseline)."""

from __future__ import annotations

from compute.core.rules.spec import ALIGNED, BASE, RuleSpec


def _alone(name: str, code: int) -> RuleSpec:
    return RuleSpec(
        name=name,
        summary=f"the {name} side alone",
        describe=lambda params: f"the {name} side alone",
        source=lambda params, step: code,
        check=lambda params, seen: None if seen.source == code else f"the {name} side decodes alone",
    )


ALIGNED_ALONE = _alone("aligned", ALIGNED)
BASE_ALONE = _alone("base", BASE)
