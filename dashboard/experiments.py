"""The Experiments page's tables: runs grouped into experiments, accuracy against the share of tokens the rule
took from the inserted side, where mixed decoding inserted tokens, and the nudging paper's γ curve.

Pure functions over a run's attributes and small frames; no Streamlit here. An experiment is the runs on one
dataset, judged by one task, with one pair of sides (model, GGUF file, adapter and template of each side), so
that accuracies differ only by how the answers were decoded (compute.core.artifact.decoding: "aligned" or "base"
alone, "nudging" or "cross-sampling").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
import polars as pl

from compute.core import tables
from compute.core.artifact import MIXED_RULES, PURE_RULES, Judged
from compute.core.statistics import SIDE_NAMES
from dashboard.labels import pair, printable

IDENTITY = ("model", "gguf_file", "adapter", "template", "template_text")  # side attributes that make a side
ALIGNED, BASE = 0, 1  # values of /positions/source


@dataclass(frozen=True)
class RunFacts:
    """What the Experiments page needs of one run."""

    run: str  # the run's label
    experiment: tuple[object, ...]  # dataset, task and both sides' identity: runs with the same one are compared
    name: str  # the experiment, in words
    rule: str
    params: dict[str, object]
    judged: Judged | None
    share_inserted: float | None  # share of positions emitted by the inserted side (mixed rules only)


def inserted_side(rule: str, params: dict[str, object]) -> int | None:
    """The side whose tokens the rule inserts into the other side's decoding (nudging: the aligned side speaks
    where the base side is unsure); None for a pure or unknown rule."""
    if rule == "nudging":
        return ALIGNED
    if rule == "cross-sampling" and params.get("insert") in SIDE_NAMES:
        return SIDE_NAMES.index(str(params["insert"]))
    return None


def share_of_side(source: np.ndarray, side: int) -> float | None:
    """The share of positions emitted by `side` (None for a run without positions)."""
    return float(np.mean(source == side)) if len(source) else None


def experiment_of(
    attrs: dict[str, object], side_attrs: dict[str, dict[str, object]], task: str | None
) -> tuple[tuple[object, ...], str]:
    """(the experiment's key, its name): dataset, task and the pair of sides with their adapters."""
    dataset = str(attrs.get("dataset", "unknown dataset"))
    key = (dataset, task, *(tuple(str(side_attrs[side].get(a, "")) for a in IDENTITY) for side in SIDE_NAMES))
    adapters = [
        f"{side} + {printable(PurePath(str(side_attrs[side]['adapter'])).name)}"
        for side in SIDE_NAMES
        if side_attrs[side].get("adapter")
    ]
    name = f"{printable(dataset)} · {printable(task) if task else 'no task'} · {pair(side_attrs)}"
    return key, name + (f" ({', '.join(adapters)})" if adapters else "")


def run_facts(
    run: str,
    attrs: dict[str, object],
    side_attrs: dict[str, dict[str, object]],
    decoding: tuple[str, dict[str, object]],
    judged: Judged | None,
    share: float | None,
) -> RunFacts:
    key, name = experiment_of(attrs, side_attrs, judged.task if judged else None)
    return RunFacts(run, key, name, decoding[0], decoding[1], judged, share)


def is_experiment(facts: RunFacts) -> bool:
    """Whether a run belongs on the page: it has a task or was decoded by both sides together."""
    return facts.judged is not None or facts.rule in MIXED_RULES


def group(runs: list[RunFacts]) -> dict[str, list[RunFacts]]:
    """Experiment name -> its runs (in the order given); two experiments with the same name get a number."""
    by_key: dict[tuple[object, ...], list[RunFacts]] = {}
    for facts in runs:
        by_key.setdefault(facts.experiment, []).append(facts)
    named: dict[str, list[RunFacts]] = {}
    for members in by_key.values():
        name, n = members[0].name, 2
        while name in named:
            name, n = f"{members[0].name} #{n}", n + 1
        named[name] = members
    return named


def _number(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _percent(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else str(value)


def parameters(rule: str, params: dict[str, object]) -> str:
    """The rule's parameters in words."""
    if rule in PURE_RULES:
        return f"the {rule} side alone"
    if rule == "nudging":
        return f"γ = {_number(params.get('threshold', '?'))}"
    if rule == "cross-sampling":
        insert = str(params.get("insert", "?"))
        into = next((side for side in SIDE_NAMES if side != insert), "?") if insert in SIDE_NAMES else "?"
        text = f"{insert} into {into}, budget {_percent(params.get('budget', '?'))}"
        if "js_threshold" in params:
            text += f" (JS ≥ {_number(params['js_threshold'])} nats)"
        return text + (f", achieved {_percent(params['share'])}" if "share" in params else "")
    return ", ".join(f"{key} = {_number(value)}" for key, value in params.items())


def direction(facts: RunFacts) -> str | None:
    """The curve a run is a point of: "aligned into base" (cross-sampling), "nudging", or None."""
    if facts.rule == "nudging":
        return "nudging"
    side = inserted_side(facts.rule, facts.params)
    if facts.rule == "cross-sampling" and side is not None:
        return f"{SIDE_NAMES[side]} into {SIDE_NAMES[1 - side]}"
    return None


def runs_table(runs: list[RunFacts]) -> pl.DataFrame:
    """One row per run: rule, parameters, task, answers judged, accuracy, the inserted side and its share."""
    rows = []
    for facts in runs:
        side = inserted_side(facts.rule, facts.params)
        rows.append(
            {
                "run": facts.run,
                "rule": facts.rule,
                "parameters": parameters(facts.rule, facts.params),
                "task": facts.judged.task if facts.judged else None,
                "judged": facts.judged.judged if facts.judged else None,
                "accuracy": facts.judged.accuracy if facts.judged else None,
                "inserted_side": SIDE_NAMES[side] if side is not None else None,
                "share_inserted": facts.share_inserted,
            }
        )
    schema = {
        "run": pl.String,
        "rule": pl.String,
        "parameters": pl.String,
        "task": pl.String,
        "judged": pl.Int64,
        "accuracy": pl.Float64,
        "inserted_side": pl.String,
        "share_inserted": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def accuracy_points(runs: list[RunFacts]) -> pl.DataFrame:
    """The accuracy chart's points: every judged mixed run with its curve (direction), the share of tokens from
    the inserted side (x) and its accuracy, sorted along each curve; parameters for the hover."""
    rows = [
        {
            "curve": direction(facts),
            "run": facts.run,
            "parameters": parameters(facts.rule, facts.params),
            "share_inserted": facts.share_inserted,
            "accuracy": facts.judged.accuracy,
        }
        for facts in runs
        if direction(facts) and facts.judged and facts.judged.accuracy is not None and facts.share_inserted is not None
    ]
    schema = {
        "curve": pl.String,
        "run": pl.String,
        "parameters": pl.String,
        "share_inserted": pl.Float64,
        "accuracy": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema).sort("curve", "share_inserted")


def references(runs: list[RunFacts]) -> pl.DataFrame:
    """The pure sides' accuracies (the chart's horizontal lines): run, rule ("aligned" / "base"), accuracy."""
    rows = [
        {"run": facts.run, "rule": facts.rule, "accuracy": facts.judged.accuracy}
        for facts in runs
        if facts.rule in PURE_RULES and facts.judged and facts.judged.accuracy is not None
    ]
    return pl.DataFrame(rows, schema={"run": pl.String, "rule": pl.String, "accuracy": pl.Float64})


def _is_inserted(side: int) -> pl.Expr:
    return (pl.col("source") == side).cast(pl.Int64)


def inserted_by_position(positions: pl.DataFrame, side: int) -> pl.DataFrame:
    """Per bin of t (as on the Positions page): positions, how many the inserted `side` emitted, and their share.
    `positions` has t and source."""
    edges = tables.bin_edges(int(positions["t"].max() or 0))
    starts = tables.bin_start(positions["t"].to_numpy(), edges)
    binned = (
        positions.with_columns(pl.Series("t_start", starts))
        .group_by("t_start")
        .agg(pl.len().alias("positions"), _is_inserted(side).sum().alias("inserted"))
        .sort("t_start")
    )
    ends = edges[np.searchsorted(edges, binned["t_start"].to_numpy()) + 1] - 1
    return binned.select(
        "t_start",
        pl.Series("t_end", ends, dtype=pl.Int64),
        "positions",
        "inserted",
        (pl.col("inserted") / pl.col("positions")).alias("share_inserted"),
    )


def inserted_by_type(positions: pl.DataFrame, types: pl.DataFrame, side: int) -> pl.DataFrame:
    """Per token type of the emitted token: positions, how many the inserted `side` emitted, the share of the
    type's positions it emitted, and the type's share of all inserted tokens. `positions` has token_id and
    source; `types` is the classified token table (id, text, type: compute.core.token_types)."""
    typed = tables.with_types(positions, types)
    total = max(int((positions["source"] == side).sum()), 1)
    return (
        typed.group_by("type")
        .agg(pl.len().alias("positions"), _is_inserted(side).sum().alias("inserted"))
        .with_columns(
            (pl.col("inserted") / pl.col("positions")).alias("share_inserted"),
            (pl.col("inserted") / total).alias("share_of_inserted"),
        )
        .sort(["inserted", "type"], descending=[True, False])
    )


def gamma_curve(table: pl.DataFrame) -> pl.DataFrame:
    """A run's base_uncertainty table (compute.core.aggregates) with the curve's two shares: `share_uncertain` (of
    all positions, the base side's top-1 probability below γ) and `share_of_shifted` (of the shifted positions,
    those among them); null where a run has no positions or no shifted ones."""
    return table.with_columns(
        pl.when(pl.col("positions") > 0).then(pl.col("uncertain") / pl.col("positions")).alias("share_uncertain"),
        pl.when(pl.col("shifted") > 0).then(pl.col("shifted_uncertain") / pl.col("shifted")).alias("share_of_shifted"),
    )
