"""Prefill (Qi et al. 2025, "Safety Alignment Should Be Made More Than Just a Few Tokens Deep"): the aligned side
writes the first k tokens, then the base side goes on. A k sweep asks how shallow the tuning is."""

from __future__ import annotations

from compute.core.rules.spec import ALIGNED, BASE, Key, Params, RuleSpec, Seen


def check(params: Params, seen: Seen) -> str | None:
    writer = ALIGNED if seen.t < int(params["tokens"]) else BASE
    return (
        None
        if seen.source == writer
        else f"the aligned side writes the first {params['tokens']} tokens, the base side the rest"
    )


PREFILL = RuleSpec(
    name="prefill",
    summary="the aligned side writes the first k tokens, then the base side",
    describe=lambda params: f"prefill: the aligned side writes the first {params['tokens']} tokens, then the base side",
    keys=(Key("tokens", int, "k, how many tokens the aligned side writes before the base side goes on", at_least=0),),
    source=lambda params, step: ALIGNED if step.t < params["tokens"] else BASE,
    check=check,
    counted=lambda params: ALIGNED,
    counted_as="tokens from the aligned side",
    sweep="tokens",
)
