"""`compute check` for answers decoded by both sides: re-derive from the stored top-k which side each token came from.

At every position of an artifact with /positions/source, the rule named by the root attribute `decoding` is
checked against what the artifact stores: each side's top-1 (`topk_ids[:, 0]`), the base side's top-1
probability (`exp topk_logprobs[:, 0]`), the JS (`/positions/js`) and the source of the position before.
The rules are stated here again, condition by condition, apart from the decoder's code (compute/core/rules.py), so
that a fault in that code shows. A position passes when its source follows the rule and o_t is the top-1 of
the side that emitted it. The stored numbers come from teacher-forced scoring and the
decisions from the decoder's own forward passes, so a comparison within `atol` of its boundary (a near tie of
two tokens, a probability or JS next to its threshold) may go either way.
"""

from __future__ import annotations

import numpy as np

from compute.core.artifact import Artifact
from compute.core.config import CROSS_SAMPLING, NUDGING
from compute.core.mismatch import Mismatch
from compute.core.rules import ALIGNED, BASE, SIDE_OF, SOURCE_OF


class RuleBroken(Mismatch):
    """A position whose source does not follow the decoding rule; `expected` says which condition failed."""

    def __str__(self) -> str:
        return f"example {self.example}, t {self.t}: {self.field}: emitted by {self.stored}, but {self.expected}"


class ShareMismatch(Mismatch):
    """The root attribute decoding_share disagrees with /positions/source."""

    def __str__(self) -> str:
        return f"attribute {self.field} is {self.stored}, /positions/source gives {self.expected}"


TOLERANCE = {"float32": 1e-3}  # other dtypes (16-bit) get LOW_PRECISION_TOLERANCE
LOW_PRECISION_TOLERANCE = 5e-2


def tolerance(artifact: Artifact) -> float:
    dtypes = {str(artifact.side_attrs[side]["dtype"]) for side in ("aligned", "base")}
    return max(TOLERANCE.get(dtype, LOW_PRECISION_TOLERANCE) for dtype in dtypes)


def _readings(value: float, threshold: float, atol: float) -> set[bool]:
    """value >= threshold, and the other answer too when value is within atol of the threshold."""
    exact = value >= threshold
    return {exact, not exact} if abs(value - threshold) <= atol else {exact}


def _top_ids(ids: np.ndarray, logprobs: np.ndarray, atol: float) -> set[int]:
    """The stored top-1 id and any id whose log-probability ties with it within atol."""
    return {int(i) for i, lp in zip(ids, logprobs, strict=True) if lp >= logprobs[0] - atol}


def _agree_readings(aligned_top: set[int], base_top: set[int]) -> set[bool]:
    readings = set()
    if aligned_top & base_top:
        readings.add(True)
    if not (aligned_top == base_top and len(aligned_top) == 1):
        readings.add(False)
    return readings


def nudging_fault(t: int, previous: int, stored: int, confident: set[bool], agree: set[bool]) -> str | None:
    """What breaks the nudging rule at this position (None: it follows it), stated apart from compute/core/rules.py.

    confident: the readings of "base top-1 probability >= gamma"; agree: of "the two sides' top-1 are one token".
    """
    if t == 0:
        return None if stored == ALIGNED else "an answer opens with a nudge from the aligned side"
    if previous == BASE and stored == BASE and True not in confident:
        return "the base side went on below gamma"
    if previous == BASE and stored == ALIGNED and False not in confident:
        return "a nudge started where the base side was at or above gamma"
    if previous == ALIGNED and stored == ALIGNED and (False not in confident or False not in agree):
        return "a nudge went on where the base side was at or above gamma or agreed with the aligned side"
    if previous == ALIGNED and stored == BASE and True not in confident and True not in agree:
        return "a nudge ended where the base side was below gamma and disagreed with the aligned side"
    return None


def cross_sampling_fault(stored: int, insert: int, divergent: set[bool]) -> str | None:
    """What breaks cross-sampling at this position; divergent: the readings of "JS >= the threshold"."""
    if stored == insert and True not in divergent:
        return "a token was inserted below the JS threshold"
    if stored != insert and False not in divergent:
        return "no token was inserted at or above the JS threshold"
    return None


def check_provenance(artifact: Artifact, atol: float | None = None) -> list[Mismatch]:
    """Every position's source and token against the artifact's decoding rule; [] when all follow it."""
    atol = tolerance(artifact) if atol is None else atol
    attrs = artifact.attrs
    rule = str(attrs["decoding"])
    source = artifact.read("positions/source")
    tokens = artifact.read("positions/token_id")
    t_of = artifact.read("positions/t")
    example_of = artifact.read("positions/example")
    ids = {side: artifact.read(f"sides/{side}/topk_ids") for side in ("aligned", "base")}
    logprobs = {side: artifact.read(f"sides/{side}/topk_logprobs") for side in ("aligned", "base")}
    js = artifact.read("positions/js") if rule == CROSS_SAMPLING else None
    mismatches = []
    for row in range(artifact.n_positions):
        t, stored = int(t_of[row]), int(source[row])
        tops = {side: _top_ids(ids[side][row], logprobs[side][row], atol) for side in ("aligned", "base")}
        if rule == NUDGING:
            confident = _readings(float(np.exp(logprobs["base"][row, 0])), float(attrs["decoding_threshold"]), atol)
            agree = _agree_readings(tops["aligned"], tops["base"])
            fault = nudging_fault(t, int(source[row - 1]) if t else -1, stored, confident, agree)
        elif rule == CROSS_SAMPLING:
            divergent = _readings(float(js[row]), float(attrs["decoding_js_threshold"]), atol)
            fault = cross_sampling_fault(stored, SOURCE_OF[str(attrs["decoding_insert"])], divergent)
        else:
            fault = None if stored == SOURCE_OF[rule] else f"the {rule} side decodes alone"
        side = SIDE_OF.get(stored)
        if fault is None and side is not None and int(tokens[row]) not in tops[side]:
            fault = f"o_t {int(tokens[row])} is not the {side} side's top-1 {sorted(tops[side])}"
        if fault is not None or side is None:
            who = side or f"unknown source {stored}"
            mismatches.append(RuleBroken(int(example_of[row]), t, f"positions/source ({rule})", who, fault))
    mismatches += _check_share(artifact, source)
    return mismatches


def _check_share(artifact: Artifact, source: np.ndarray) -> list[Mismatch]:
    """decoding_share must be the share of positions the nudging or inserted side emitted."""
    attrs = artifact.attrs
    if "decoding_share" not in attrs:
        return []
    counted = SOURCE_OF["aligned"] if attrs["decoding"] == NUDGING else SOURCE_OF[str(attrs["decoding_insert"])]
    share = float(np.mean(source == counted)) if len(source) else float("nan")
    if np.isclose(share, float(attrs["decoding_share"]), atol=1e-6, equal_nan=True):
        return []
    return [ShareMismatch(-1, -1, "decoding_share", attrs["decoding_share"], share)]
