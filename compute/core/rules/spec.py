"""What a decoding rule declares: the registry's entry type, the step a rule sees and the position its check sees.

A rule is one `RuleSpec` (compute/core/rules/<rule>.py). Everything else derives from it: the [decoding] keys and
their one-line errors (compute/core/config.py), the decoder's per-step signals (compute/engine/decoding.py), the
root attributes a run stores and the sentence describing them (compute/engine/run.py), the calibration before
decoding (compute/engine/calibration.py), `tds check`'s provenance check (compute/core/provenance.py), the
artifact's pure/mixed split and the Experiments page's grouping. Plain Python: `tds check` and the dashboard need
no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ALIGNED, BASE, MIXED = 0, 1, 2  # the values of /positions/source; MIXED: a logit rule's token neither side's top-1
SOURCE_OF = {"aligned": ALIGNED, "base": BASE, "mixed": MIXED}
SIDE_OF = {code: name for name, code in SOURCE_OF.items()}

REQUIRED = object()  # a key without a default: the rule needs it
Params = Mapping[str, Any]  # a rule's keys (and what its calibration adds) by name


@dataclass(frozen=True)
class Key:
    """One [decoding] key of a rule: its TOML type, bounds and doc; the config loader checks it from these."""

    name: str
    type: type  # float, int or str
    doc: str
    default: Any = REQUIRED
    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    choices: tuple[str, ...] = ()

    def bounds(self) -> dict[str, Any]:
        """The bounds in the form the config loader's check takes (compute.core.config.key's metadata)."""
        return {"at_least": self.at_least, "above": self.above, "at_most": self.at_most, "choices": self.choices}


@dataclass(frozen=True)
class Step:
    """What one decoding step shows a top-1 rule, for one row."""

    t: int  # the answer's length so far
    previous: int | None  # the source of the token before (None at t = 0)
    base_top_prob: float  # the base side's top-1 probability
    tops_agree: bool  # the two sides' top-1 tokens are one token
    js: float  # the Jensen-Shannon divergence of the two next-token distributions (0 unless the rule needs it)


@dataclass(frozen=True)
class Seen:
    """What an artifact shows at one position, for a rule's provenance check (compute/core/provenance.py).

    Numbers come from teacher-forced scoring and decisions from the decoder's own forward passes, so a comparison
    within `atol` of its boundary may go either way: `readings` gives both answers there."""

    t: int
    previous: int | None  # the source stored at t - 1
    source: int  # the source stored at t
    token: int  # o_t
    tops: dict[int, set[int]]  # per side (ALIGNED, BASE): the stored top-1 id and ids tied with it within atol
    topk: dict[int, dict[int, float]]  # per side: stored top-k id -> log-probability
    logprob: dict[int, float]  # per side: teacher-forced log P_side(o_t)
    base_top_prob: float
    js: float | None  # /positions/js when the artifact has it
    mixture_logprob: float | None  # the decoder's log-probability of o_t under the distribution it decoded from
    atol: float

    def readings(self, value: float, threshold: float) -> set[bool]:
        """value >= threshold, and the other answer too when value is within atol of the threshold."""
        exact = value >= threshold
        return {exact, not exact} if abs(value - threshold) <= self.atol else {exact}

    def is_top(self, side: int) -> bool:
        """o_t is unambiguously `side`'s top-1 (no other token ties with it)."""
        return self.tops[side] == {self.token}


@dataclass(frozen=True)
class Calibration:
    """Values a rule sets before decoding, from a decode of one side alone; `adds` names the params it adds."""

    adds: tuple[str, ...]
    alone: Callable[[Params], str]  # which side decodes alone for it
    compute: Callable[[Params, list[list[float]]], tuple[dict[str, Any], str]]  # (params, log line) from its JS


@dataclass(frozen=True)
class RuleSpec:
    """One decoding rule. A top-1 rule picks a side per step (`source`); a logit rule decodes from `mixture`.

    `check` is the rule stated again for `tds check`, condition by condition, apart from `source`/`mixture`, so
    that a fault in the decoder's code shows: it gets one position and returns what breaks the rule (or None)."""

    name: str
    summary: str  # who decodes, in a few words (validate's list, the docs' table)
    describe: Callable[[Params], str]  # one sentence on a run's parameters (`tds info`, the Experiments page)
    check: Callable[[Params, Seen], str | None]
    keys: tuple[Key, ...] = ()
    source: Callable[[Params, Step], int] | None = None
    mixture: Callable[[Params, Any, Any], Any] | None = None  # (params, logp aligned, logp base) -> log-scores
    counted: Callable[[Params], int] | None = None  # the source code decoding_share counts; None: a pure rule
    counted_as: str = ""  # what decoding_share counts, in words ("tokens from the aligned side")
    signals: frozenset[str] = frozenset()  # per-step signals beyond the tops: "js"
    calibration: Calibration | None = None
    sweep: str | None = None  # the key a sweep of this rule varies (the Experiments page's x axis)
    curve: Callable[[Params], str] | None = None  # mixed top-1 rules: the curve of accuracy against decoding_share
    sampled: Callable[[Params], bool] = field(default=lambda params: False)  # whether a run's tokens were sampled

    @property
    def pure(self) -> bool:
        return self.counted is None

    def stored(self) -> tuple[str, ...]:
        """The root attributes a run of this rule stores (decoding_share is added when the run is done)."""
        calibrated = self.calibration.adds if self.calibration else ()
        share = ("decoding_share",) if not self.pure else ()
        return ("decoding", *(f"decoding_{k.name}" for k in self.keys), *(f"decoding_{n}" for n in calibrated), *share)


def params_of(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A run's rule parameters from its root attributes (decoding_* without the prefix), numpy scalars unwrapped."""
    return {
        k.removeprefix("decoding_"): v.item() if hasattr(v, "item") else v
        for k, v in attrs.items()
        if k.startswith("decoding_")
    }
