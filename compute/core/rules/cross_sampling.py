"""Cross-sampling (Sparse but Critical): one side decodes; the other's token is taken where the sides diverge most."""

from __future__ import annotations

import numpy as np

from compute.core.rules.spec import SOURCE_OF, Calibration, Key, Params, RuleSpec, Seen, Step


def source(params: Params, step: Step) -> int:
    """The inserted side's token where JS is at or above the threshold, the receiving side's everywhere else."""
    insert = SOURCE_OF[params["insert"]]
    return insert if step.js >= params["js_threshold"] else 1 - insert


def check(params: Params, seen: Seen) -> str | None:
    """What breaks cross-sampling at this position, stated apart from `source`."""
    divergent = seen.readings(float(seen.js), float(params["js_threshold"]))
    inserted = seen.source == SOURCE_OF[str(params["insert"])]
    if inserted and True not in divergent:
        return "a token was inserted below the JS threshold"
    if not inserted and False not in divergent:
        return "no token was inserted at or above the JS threshold"
    return None


def js_threshold(js: list[list[float]], budget: float) -> float:
    """The (1 - budget) quantile of the per-step JS over the answers the receiving side decoded alone, so that
    about `budget` of those positions are at or above it (inf when nothing was decoded: nothing to insert)."""
    values = np.concatenate([np.asarray(x, dtype=np.float64) for x in js] or [np.zeros(0)])
    return float(np.quantile(values, 1.0 - budget)) if len(values) else float("inf")


def calibrate(params: Params, js: list[list[float]]) -> tuple[dict[str, float], str]:
    threshold = js_threshold(js, params["budget"])
    receiving = receiving_side(params)
    line = (
        f"cross-sampling: JS threshold {threshold:.4f} nats, the {1 - params['budget']:.0%} quantile over "
        f"{sum(map(len, js))} positions the {receiving} side decoded alone"
    )
    return {"js_threshold": threshold}, line


def receiving_side(params: Params) -> str:
    return "base" if params["insert"] == "aligned" else "aligned"


def describe(params: Params) -> str:
    text = f"cross-sampling, {params['insert']} tokens inserted, budget {params['budget']:.0%}"
    return text + (f", JS threshold {params['js_threshold']:.4f}" if "js_threshold" in params else "")


CROSS_SAMPLING = RuleSpec(
    name="cross-sampling",
    summary="one side, with the other's tokens inserted where they diverge most",
    describe=describe,
    keys=(
        Key(
            "insert",
            str,
            "the side whose tokens are inserted into the other side's decoding",
            choices=("aligned", "base"),
        ),
        Key(
            "budget",
            float,
            "the share of positions at which the inserted side's token is aimed to be taken",
            above=0.0,
            at_most=1.0,
        ),
    ),
    source=source,
    check=check,
    counted=lambda params: SOURCE_OF[params["insert"]],
    counted_as="tokens inserted",
    signals=frozenset({"js"}),
    calibration=Calibration(adds=("js_threshold",), alone=receiving_side, compute=calibrate),
    curve=lambda params: f"{params['insert']} into {receiving_side(params)}",
)
