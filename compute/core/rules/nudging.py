"""Nudging (Fei et al.) token by token, as their code (`fywalter/nudging`) does it word by word."""

from __future__ import annotations

from compute.core.rules.spec import ALIGNED, BASE, Key, Params, RuleSpec, Seen, Step


def source(params: Params, step: Step) -> int:
    """- The answer opens with a nudge: their loop starts every answer with the nudging model's first word.
    - While the base side writes, it goes on as long as its top-1 probability is at least gamma; the first step
      where it is not starts a nudge, and that step's token is the aligned side's (the first nudging word is
      always taken).
    - A nudge goes on, one aligned token a step, until the base is confident again or its top-1 token is the
      aligned side's top-1; that step's token is the base side's, and the base writes on."""
    confident = step.base_top_prob >= params["threshold"]
    if step.previous is None:
        return ALIGNED
    if step.previous == BASE:
        return BASE if confident else ALIGNED
    return BASE if confident or step.tops_agree else ALIGNED


def check(params: Params, seen: Seen) -> str | None:
    """What breaks nudging at this position, stated apart from `source`."""
    confident = seen.readings(seen.base_top_prob, float(params["threshold"]))
    aligned_top, base_top = seen.tops[ALIGNED], seen.tops[BASE]
    agree = ({True} if aligned_top & base_top else set()) | (
        set() if aligned_top == base_top and len(aligned_top) == 1 else {False}
    )
    previous, stored = seen.previous, seen.source
    if seen.t == 0:
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


NUDGING = RuleSpec(
    name="nudging",
    summary="the base side, nudged by the aligned side where it is unsure",
    describe=lambda params: f"nudging (gamma {params['threshold']})",
    keys=(
        Key(
            "threshold",
            float,
            "gamma, the base side's top-1 probability below which the aligned side writes",
            default=0.4,  # gamma in the nudging paper's examples
            above=0.0,
            at_most=1.0,
        ),
    ),
    source=source,
    check=check,
    counted=lambda params: ALIGNED,
    counted_as="tokens from the aligned side",
    curve=lambda params: "nudging",
)
