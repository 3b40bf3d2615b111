"""`tds check` for answers decoded by both sides: re-derive from the stored top-k which side each token came from.

At every position of an artifact with /positions/source, the rule named by the root attribute `decoding` is
checked with its declaration's `check` (compute/core/rules/<rule>.py), a restatement of the rule written apart
from the decoder's code, against what the artifact stores: each side's top-k (`topk_ids`, `topk_logprobs`), the
teacher-forced log-probabilities of o_t, the JS (`/positions/js`) and the source of the position before. Here,
for every rule: o_t is the top-1 of the side that emitted it (sources 0 and 1); the decoder's own log-probabilities
of o_t under each side (`/positions/decoding_logprobs`, where stored) match the teacher-forced ones; and
`decoding_share` matches the sources. The stored numbers come from teacher-forced scoring and the decisions from
the decoder's own forward passes, so a comparison within `atol` of its boundary (a near tie of two tokens, a
probability or JS next to its threshold) may go either way.
"""

from __future__ import annotations

import numpy as np

from compute.core.artifact.reader import Artifact
from compute.core.mismatch import Mismatch
from compute.core.rules import ALIGNED, BASE, RULES, SIDE_OF, Rule, Seen, params_of

SIDES = {ALIGNED: "aligned", BASE: "base"}


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
    dtypes = {str(artifact.side_attrs[side]["dtype"]) for side in SIDES.values()}
    return max(TOLERANCE.get(dtype, LOW_PRECISION_TOLERANCE) for dtype in dtypes)


def _top_ids(ids: np.ndarray, logprobs: np.ndarray, atol: float) -> set[int]:
    """The stored top-1 id and any id whose log-probability ties with it within atol."""
    return {int(i) for i, lp in zip(ids, logprobs, strict=True) if lp >= logprobs[0] - atol}


def check_provenance(artifact: Artifact, atol: float | None = None) -> list[Mismatch]:
    """Every position's source and token against the artifact's decoding rule; [] when all follow it."""
    atol = tolerance(artifact) if atol is None else atol
    name = str(artifact.attrs["decoding"])
    spec = RULES.get(name)
    if spec is None:
        return [RuleBroken(-1, -1, "decoding", name, "this version knows no such rule")]
    params = params_of(artifact.attrs)
    source = artifact.read("positions/source")
    tokens = artifact.read("positions/token_id")
    t_of = artifact.read("positions/t")
    example_of = artifact.read("positions/example")
    ids = {code: artifact.read(f"sides/{side}/topk_ids") for code, side in SIDES.items()}
    logprobs = {code: artifact.read(f"sides/{side}/topk_logprobs") for code, side in SIDES.items()}
    own = {code: artifact.read(f"sides/{side}/logprob") for code, side in SIDES.items()}
    js = artifact.read("positions/js") if artifact.has("positions/js") else None
    decoder = artifact.read("positions/decoding_logprobs") if artifact.has("positions/decoding_logprobs") else None
    mismatches: list[Mismatch] = []
    for row in range(artifact.n_positions):
        t, stored, token = int(t_of[row]), int(source[row]), int(tokens[row])
        seen = Seen(
            t=t,
            previous=int(source[row - 1]) if t else None,
            source=stored,
            token=token,
            tops={code: _top_ids(ids[code][row], logprobs[code][row], atol) for code in SIDES},
            topk={
                code: dict(zip(ids[code][row].tolist(), logprobs[code][row].tolist(), strict=True)) for code in SIDES
            },
            logprob={code: float(own[code][row]) for code in SIDES},
            base_top_prob=float(np.exp(logprobs[BASE][row, 0])),
            js=None if js is None else float(js[row]),
            mixture_logprob=None if decoder is None else float(decoder[row, 2]),
            atol=atol,
        )
        fault = _fault(spec, params, seen, None if decoder is None else decoder[row])
        if fault is not None:
            who = SIDE_OF.get(stored, f"unknown source {stored}")
            mismatches.append(RuleBroken(int(example_of[row]), t, f"positions/source ({name})", who, fault))
    return mismatches + _check_share(artifact, Rule(name, params), source)


def _fault(spec, params, seen: Seen, decoder: np.ndarray | None) -> str | None:
    """What breaks the rule or the stored numbers at one position (None: nothing)."""
    if seen.source not in SIDE_OF or (spec.mixture is None and seen.source not in SIDES):
        return f"the rule {spec.name} emits no source {seen.source}"
    fault = spec.check(params, seen)
    if fault is None and seen.source in SIDES and seen.token not in seen.tops[seen.source]:
        fault = f"o_t {seen.token} is not the {SIDES[seen.source]} side's top-1 {sorted(seen.tops[seen.source])}"
    if fault is None and decoder is not None:
        fault = _logprob_fault(spec, seen, decoder)
    return fault


def _logprob_fault(spec, seen: Seen, decoder: np.ndarray) -> str | None:
    """The decoder's log-probabilities of o_t against the teacher-forced ones; a top-1 rule's decoded one is the
    emitting side's."""
    for code, side in SIDES.items():
        if abs(float(decoder[code]) - seen.logprob[code]) > seen.atol:
            return f"the decoder's log P_{side}(o_t) {decoder[code]:.5f} is not the scored {seen.logprob[code]:.5f}"
    if spec.mixture is None and abs(float(decoder[2]) - float(decoder[seen.source])) > seen.atol:
        return f"the decoded log-probability {decoder[2]:.5f} is not the emitting side's {decoder[seen.source]:.5f}"
    return None


def _check_share(artifact: Artifact, rule: Rule, source: np.ndarray) -> list[Mismatch]:
    """decoding_share must be the share of positions whose source is the one the rule counts."""
    attrs = artifact.attrs
    if "decoding_share" not in attrs or rule.counted_side is None:
        return []
    share = float(np.mean(source == rule.counted_side)) if len(source) else float("nan")
    if np.isclose(share, float(attrs["decoding_share"]), atol=1e-6, equal_nan=True):
        return []
    return [ShareMismatch(-1, -1, "decoding_share", attrs["decoding_share"], share)]
