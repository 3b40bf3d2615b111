"""Logit arithmetic (emulated fine-tuning, Mitchell et al. 2023; proxy-tuning, Liu et al. 2024): decode from
log p_base + alpha (log p_aligned - log p_base). alpha 0 is the base side, 1 the aligned side, between them an
interpolation, above 1 an amplification of what tuning changed."""

from __future__ import annotations

import math

from compute.core.rules.spec import ALIGNED, BASE, MIXED, Key, Params, RuleSpec, Seen

SIDES = (ALIGNED, BASE)


def mixture(params: Params, aligned, base):
    """The combined log-scores (unnormalised), for tensors or arrays alike."""
    return base + params["alpha"] * (aligned - base)


def check(params: Params, seen: Seen) -> str | None:
    """The source code, the stored mixture log-probability and (greedy) the choice, stated apart from `mixture`."""
    if seen.source == BASE and seen.is_top(ALIGNED):
        return "o_t is the aligned side's top-1, stored as the base side's"
    if seen.source == MIXED and any(seen.is_top(side) for side in SIDES):
        return "o_t is a side's top-1, stored as neither side's"
    alpha = float(params["alpha"])
    weight = {ALIGNED: alpha, BASE: 1.0 - alpha}
    tolerance = seen.atol * (1.0 + 2.0 * abs(alpha))
    chosen = sum(weight[side] * seen.logprob[side] for side in SIDES)
    known = [
        sum(weight[s] * seen.topk[s][c] for s in SIDES) for c in seen.topk[ALIGNED].keys() & seen.topk[BASE].keys()
    ]
    if seen.token not in seen.topk[ALIGNED].keys() & seen.topk[BASE].keys():
        known.append(chosen)
    if seen.mixture_logprob is not None:  # log-softmax of the scores: at most chosen - logsumexp(the known scores)
        top = max(known)
        bound = chosen - (top + math.log(sum(math.exp(s - top) for s in known)))
        if seen.mixture_logprob > bound + tolerance:
            return f"the stored log-probability under the mixture {seen.mixture_logprob:.4f} is above {bound:.4f}"
    if params["temperature"] > 0:
        return None  # sampled: any token may be drawn
    for candidate in seen.topk[ALIGNED].keys() | seen.topk[BASE].keys():
        lowest = _lowest_score(seen, candidate, weight)
        if lowest is not None and lowest > chosen + tolerance:
            return f"token {candidate} scores higher under the mixture ({lowest:.4f} > {chosen:.4f})"
    return None


def _lowest_score(seen: Seen, candidate: int, weight: dict[int, float]) -> float | None:
    """The candidate's mixture score, or a lower bound where a side's log-probability is not stored and its weight
    is negative (alpha > 1: that log-probability is at most the side's k-th stored one); None where no lower bound
    exists (a positive weight on a log-probability not stored)."""
    total = 0.0
    for side in SIDES:
        if candidate in seen.topk[side]:
            total += weight[side] * seen.topk[side][candidate]
        elif weight[side] < 0:
            total += weight[side] * min(seen.topk[side].values())
        elif weight[side] > 0:
            return None
    return total


def describe(params: Params) -> str:
    how = (
        "greedy"
        if params["temperature"] == 0
        else f"sampled at temperature {params['temperature']}, top-p {params['top_p']}"
    )
    return f"logit arithmetic (alpha {params['alpha']}, {how})"


LOGIT_ARITHMETIC = RuleSpec(
    name="logit-arithmetic",
    summary="log p_base + alpha (log p_aligned - log p_base), greedy or sampled",
    describe=describe,
    keys=(
        Key(
            "alpha",
            float,
            "the weight of what tuning changed: 0 the base side, 1 the aligned side, >1 amplified",
            at_least=0.0,
        ),
        Key(
            "temperature",
            float,
            "0 decodes greedily; above 0 samples the combination at this temperature",
            default=0.0,
            at_least=0.0,
        ),
        Key("top_p", float, "nucleus of the sampled combination", default=1.0, above=0.0, at_most=1.0),
        Key("seed", int, "the seed of the sampled tokens", default=0),
    ),
    mixture=mixture,
    check=check,
    counted=lambda params: MIXED,
    counted_as="tokens neither side's top-1",
    sweep="alpha",
    sampled=lambda params: params["temperature"] > 0,
)
