"""Which side emits each token when both sides decode an answer together.

The rules are pure functions of what one step shows (each side's top-1 token, the base side's top-1
probability, the Jensen-Shannon divergence of the two next-token distributions), so the decoder
(compute/engine/decoding.py) and `compute check` (compute/core/provenance.py, from the stored top-k) apply the same
code. Plain Python here: the check needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from compute.core.config import CROSS_SAMPLING, NUDGING, DecodingConfig

ALIGNED, BASE = 0, 1  # the values of /positions/source
SOURCE_OF = {"aligned": ALIGNED, "base": BASE}
SIDE_OF = {ALIGNED: "aligned", BASE: "base"}


def nudging_source(previous: int | None, base_confident: bool, tops_agree: bool) -> int:
    """Nudging (Fei et al.) token by token, as their code does it word by word.

    - The answer opens with a nudge: their loop starts every answer with the nudging model's first word.
    - While the base side writes, it goes on as long as its top-1 probability is at least gamma
      (`base_confident`); the first step where it is not starts a nudge, and that step's token is the
      aligned side's (the first nudging word is always taken).
    - A nudge goes on, one aligned token a step, until the base is confident again or its top-1 token is
      the aligned side's top-1 (`tops_agree`); that step's token is the base side's, and the base writes on.
    """
    if previous is None:
        return ALIGNED
    if previous == BASE:
        return BASE if base_confident else ALIGNED
    return BASE if base_confident or tops_agree else ALIGNED


def cross_sampling_source(insert: int, divergent: bool) -> int:
    """Cross-sampling (Sparse but Critical): the inserted side's token where the sides diverge (JS at or above
    the threshold), the receiving side's token everywhere else."""
    return insert if divergent else 1 - insert


@dataclass(frozen=True)
class Rule:
    """A [decoding] table ready to decode with; cross-sampling's JS threshold comes from its calibration."""

    name: str
    threshold: float | None = None  # nudging: gamma
    insert: int | None = None  # cross-sampling: ALIGNED or BASE
    budget: float | None = None  # cross-sampling: the share of positions the JS threshold was set for
    js_threshold: float | None = None  # cross-sampling: JS at or above which the inserted side's token is taken

    @classmethod
    def from_config(cls, config: DecodingConfig, js_threshold: float | None = None) -> Rule:
        insert = SOURCE_OF[config.insert] if config.insert else None
        return cls(config.rule, config.threshold, insert, config.budget, js_threshold)

    @property
    def needs_js(self) -> bool:
        return self.name == CROSS_SAMPLING

    @property
    def counted_side(self) -> int | None:
        """The side whose share of the tokens a mixed rule reports: the nudging side, or the inserted side."""
        return {NUDGING: ALIGNED, CROSS_SAMPLING: self.insert}.get(self.name)

    def source(self, previous: int | None, base_top_prob: float, tops_agree: bool, js: float) -> int:
        """Whose top-1 token is emitted at this step."""
        if self.name == NUDGING:
            return nudging_source(previous, base_top_prob >= self.threshold, tops_agree)
        if self.name == CROSS_SAMPLING:
            return cross_sampling_source(self.insert, js >= self.js_threshold)
        return SOURCE_OF[self.name]

    def attrs(self) -> dict[str, str | float]:
        """The artifact's root attributes for this rule (decoding_share is added when the run is done)."""
        attrs: dict[str, str | float] = {"decoding": self.name}
        if self.name == NUDGING:
            attrs["decoding_threshold"] = self.threshold
        if self.name == CROSS_SAMPLING:
            attrs["decoding_insert"] = SIDE_OF[self.insert]
            attrs["decoding_budget"] = self.budget
            attrs["decoding_js_threshold"] = self.js_threshold
        return attrs
