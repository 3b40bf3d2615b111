"""The template control's decomposition: what the weights changed, what the template changed, and their interaction.

A control (config `control = "template"`, docs/control.md) scores one answer set under four cells,
{aligned weights, base weights} x {aligned template, base template}, and writes five pair artifacts tied by
their root attributes `control_name` and `control_role`. From them, per measure: the total shift (aligned
weights + template vs base weights + template), the weights' part under each template, the template's part
under each weights, and the interaction (a difference in differences: the weights' part under the aligned
template minus under the base template), each with a paired cluster-bootstrap interval over examples (every
part computed on the same resamples of the shared examples).

Measures. Per cell: the share of answer tokens the cell ranks 3rd or lower (the answer-token definition's
"shifted", which depends on the ranking side alone) and the mean log-probability of the answer token; a part is
the difference between its pair's cells (base cell minus aligned cell for the shifted share, aligned minus base
for the log-probability), so the parts add up: total = weights (base template) + template (aligned weights) =
weights (aligned template) + template (base weights), and the template's share of the total is given along both
paths. On the aligned cell's own greedy answers (which it ranks first) a pair's shifted-share part is its usual
shifted share. Per pair: the mean KL(P_aligned ‖ P_base), each pair's own number (they do not add up).

numpy only: `compute report` and the dashboard use it without torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from compute.core import intervals, side_identity
from compute.core.artifact.reader import Artifact
from compute.core.categories import SHIFTED, shift_category
from compute.core.config import ALIGNED_WEIGHTS_BASE_TEMPLATE, BASE_WEIGHTS_ALIGNED_TEMPLATE, CONTROL_PAIRS
from compute.core.intervals import Estimate

INTERACTION = "interaction"
PARTS = (*CONTROL_PAIRS, INTERACTION)
PART_LABELS = {
    "total": "total",
    "weights-aligned-template": "weights (aligned template)",
    "weights-base-template": "weights (base template)",
    "template-aligned-weights": "template (aligned weights)",
    "template-base-weights": "template (base weights)",
    INTERACTION: "interaction",
}
CELL_LABELS = {
    "aligned": "aligned weights + aligned template",
    BASE_WEIGHTS_ALIGNED_TEMPLATE: "base weights + aligned template",
    ALIGNED_WEIGHTS_BASE_TEMPLATE: "aligned weights + base template",
    "base": "base weights + base template",
}
# Where each cell's per-position values are read: (role of a pair artifact, the side the cell plays in it).
CELL_SOURCES = {
    "aligned": ("total", "aligned"),
    "base": ("total", "base"),
    BASE_WEIGHTS_ALIGNED_TEMPLATE: ("weights-aligned-template", "base"),
    ALIGNED_WEIGHTS_BASE_TEMPLATE: ("weights-base-template", "aligned"),
}
SHIFTED_SHARE, LOGPROB, MEAN_KL = "shifted share (answer token)", "Δ mean log P(o_t) (nats)", "mean KL (nats)"
# Additive measures: a per-position value of a cell (from its rank and log P(o_t)), and the sign that makes a part
# (aligned cell minus base cell, times the sign) positive in the direction of the shift.
CELL_MEASURES: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], int]] = {
    SHIFTED_SHARE: (lambda rank, logprob: shift_category(rank) == SHIFTED, -1),
    LOGPROB: (lambda rank, logprob: logprob, 1),
}
TEMPLATE_SHARE_PATHS = {  # the template's part / total, along the path through each weights
    "aligned weights": "template-aligned-weights",
    "base weights": "template-base-weights",
}


@dataclass(frozen=True)
class Decomposition:
    name: str  # the control's run name
    examples: int
    positions: int
    weights_equal: bool  # both sides have the same weights: the weights' part is zero by construction
    measures: dict[str, dict[str, Estimate]]  # measure -> part (PARTS) -> estimate
    cells: dict[str, dict[str, Estimate]]  # additive measure -> cell -> its mean (a share, a log-probability)
    template_share: dict[str, dict[str, Estimate]]  # additive measure -> path -> template part / total


def control_groups(artifacts: list[Artifact]) -> dict[str, dict[str, Artifact]]:
    """Complete controls among `artifacts`: control name -> role -> artifact (all five roles present)."""
    groups: dict[str, dict[str, Artifact]] = {}
    for artifact in artifacts:
        if artifact.attrs.get("control") == "template":
            groups.setdefault(str(artifact.attrs["control_name"]), {})[str(artifact.attrs["control_role"])] = artifact
    return {name: roles for name, roles in groups.items() if set(roles) == set(CONTROL_PAIRS)}


def _per_example(artifact: Artifact, values: np.ndarray) -> np.ndarray:
    example = artifact.read("positions/example")
    return np.bincount(example, weights=values.astype(np.float64), minlength=artifact.n_examples)


def decompose(roles: dict[str, Artifact], resamples: int = intervals.RESAMPLES, seed: int = 0) -> Decomposition:
    """The decomposition of one complete control (its five pair artifacts by role)."""
    total = roles["total"]
    reference = total.read("positions/token_id")
    for role, artifact in roles.items():
        if not np.array_equal(artifact.read("positions/token_id"), reference):
            raise ValueError(f"{artifact.name}: the control's {role} pair does not share the total's answers")
    lengths = np.diff(total.read("examples/offsets")).astype(np.float64)
    weights = intervals.resample_weights(len(lengths), resamples, seed)

    def mean(numerator: np.ndarray) -> Estimate:
        return intervals.ratio(numerator, lengths, weights)

    measures: dict[str, dict[str, Estimate]] = {}
    cells: dict[str, dict[str, Estimate]] = {}
    template_share: dict[str, dict[str, Estimate]] = {}
    for measure, (per_position, sign) in CELL_MEASURES.items():
        sums = {}
        for cell, (role, side) in CELL_SOURCES.items():
            artifact = roles[role]
            values = per_position(artifact.read(f"sides/{side}/rank"), artifact.read(f"sides/{side}/logprob"))
            sums[cell] = _per_example(artifact, values)
        parts = {role: sign * (sums[a] - sums[b]) for role, (a, b) in CONTROL_PAIRS.items()}
        parts[INTERACTION] = parts["weights-aligned-template"] - parts["weights-base-template"]
        measures[measure] = {role: mean(part) for role, part in parts.items()}
        cells[measure] = {cell: mean(cell_sums) for cell, cell_sums in sums.items()}
        template_share[measure] = {
            path: intervals.statistic(np.divide, (parts[role], parts["total"]), weights)
            for path, role in TEMPLATE_SHARE_PATHS.items()
        }
    kl = {role: _per_example(a, a.read("positions/kl")) for role, a in roles.items()}
    measures[MEAN_KL] = {role: mean(kl[role]) for role in CONTROL_PAIRS}
    measures[MEAN_KL][INTERACTION] = intervals.paired_difference(
        kl["weights-aligned-template"], lengths, kl["weights-base-template"], lengths, weights
    )
    return Decomposition(
        name=str(total.attrs["control_name"]),
        examples=len(lengths),
        positions=int(lengths.sum()),
        weights_equal=side_identity.same_weights(total.side_attrs["aligned"], total.side_attrs["base"]),
        measures=measures,
        cells=cells,
        template_share=template_share,
    )


def decompositions(
    artifacts: list[Artifact], resamples: int = intervals.RESAMPLES, seed: int = 0
) -> list[Decomposition]:
    return [decompose(roles, resamples, seed) for roles in control_groups(artifacts).values()]


def _number(value: float, percent: bool) -> str:
    if math.isnan(value):
        return "–"
    return f"{100 * value:.2f}" if percent else f"{value:.4f}"


def format_estimate(estimate: Estimate, percent: bool = False) -> str:
    """An estimate and its interval as the report prints it: 1.30 % [0.90, 1.80], or 0.0612 [0.0581, 0.0650]."""
    unit = " %" if percent else ""
    low, high = _number(estimate.low, percent), _number(estimate.high, percent)
    return f"{_number(estimate.value, percent)}{unit} [{low}, {high}]"


def format_decomposition(d: Decomposition) -> str:
    """The markdown `compute report` prints for one control."""
    lines = [
        f"Template control {d.name}: {d.examples} examples, {d.positions:,} positions; 95 % paired bootstrap "
        "intervals over examples (every part on the same resamples); interaction = weights (aligned template) "
        "- weights (base template)",
        "",
        "| measure | " + " | ".join(PART_LABELS[p] for p in PARTS) + " |",
        "| --- |" + " --: |" * len(PARTS),
    ]
    for measure, parts in d.measures.items():
        percent = measure == SHIFTED_SHARE
        lines.append(f"| {measure} | " + " | ".join(format_estimate(parts[p], percent) for p in PARTS) + " |")
    measures = list(d.cells)
    lines += [
        "",
        "| cell | " + " | ".join(m.replace("Δ ", "") for m in measures) + " |",
        "| --- |" + " --: |" * len(measures),
    ]
    for cell, label in CELL_LABELS.items():
        values = (format_estimate(d.cells[m][cell], m == SHIFTED_SHARE) for m in measures)
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    lines.append("")
    for m in measures:
        paths = "; ".join(f"via {path} {format_estimate(e, percent=True)}" for path, e in d.template_share[m].items())
        lines.append(f"Template's share of the total ({m.replace('Δ ', '')}): {paths}")
    if d.weights_equal:
        lines.append(
            "Both sides have the same weights: the weights' parts are zero by construction and the whole shift is "
            "the template's."
        )
    return "\n".join(lines)


def format_controls(artifacts: list[Artifact], resamples: int = intervals.RESAMPLES, seed: int = 0) -> str:
    """Every complete control among the runs, formatted; empty when there is none."""
    return "\n\n".join(format_decomposition(d) for d in decompositions(artifacts, resamples, seed))


def _json(e: Estimate) -> dict:
    """{value, low, high, n}, nan (an undefined number, such as a share of a zero total) as null."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in e.as_dict().items()}


def decomposition_json(d: Decomposition) -> dict:
    """One control as `report --json` gives it (docs/control.md)."""
    return {
        "control": d.name,
        "examples": d.examples,
        "positions": d.positions,
        "weights_equal": d.weights_equal,
        "measures": {m: {p: e.as_dict() for p, e in parts.items()} for m, parts in d.measures.items()},
        "cells": {m: {cell: e.as_dict() for cell, e in cells.items()} for m, cells in d.cells.items()},
        "template_share": {
            m: {path: e.as_dict() for path, e in paths.items()} for m, paths in d.template_share.items()
        },
    }


def controls_json(artifacts: list[Artifact], resamples: int = intervals.RESAMPLES, seed: int = 0) -> list[dict]:
    """Every complete control among the runs, as `report --json` gives them under `controls`."""
    return [decomposition_json(d) for d in decompositions(artifacts, resamples, seed)]
