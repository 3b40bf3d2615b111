"""The Experiments page's tables: runs grouped into experiments, accuracy (with its Wilson interval) against the
share of tokens the rule took from the inserted side and against a sweep's parameter (logit arithmetic's alpha,
prefill's k), where mixed decoding inserted tokens, and the nudging paper's γ curve.

Pure functions over a run's attributes and small frames; no Streamlit here. An experiment is the runs on one
dataset, judged by one task, with one pair of sides (each side's identity: compute/core/side_identity.py), whose
answers were decoded (by one side alone or by a rule of compute/core/rules/), so that accuracies differ only by
how the answers were decoded. A run scored over answers given (teacher-forced) decoded nothing: it is in no
experiment, and never "the aligned side alone".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
import polars as pl

from compute.core import tables
from compute.core.artifact.verdicts import Judged
from compute.core.rules import ALIGNED, BASE, MIXED_RULES, PURE_RULES, RULES, SIDE_OF
from compute.core.side_identity import identity
from dashboard.labels import pair, printable

SIDE_NAMES = ("aligned", "base")
DECODED_BY_THE_ALIGNED_SIDE = 0.99  # a run without `decoding` whose answer is the aligned top-1 this often
Z95 = 1.959963984540054  # the normal quantile of a 95 % interval
__all__ = ["ALIGNED", "BASE"]  # the source codes, for the page and its tests


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
    decoded: bool = True  # False: scored over answers given (teacher-forced), in no experiment
    short: str = ""  # the run's own name (the artifact's), for labels on a chart; "" gives `run`


def inserted_side(rule: str, params: dict[str, object]) -> int | None:
    """The source code a mixed rule counts (the registry's `counted`: nudging the aligned side, cross-sampling the
    inserted side, logit arithmetic "mixed", prefill the aligned side); None for a pure or unknown rule or
    parameters it cannot read."""
    spec = RULES.get(rule)
    if spec is None or spec.counted is None:
        return None
    try:
        return spec.counted(params)
    except (KeyError, TypeError):
        return None


def answers_decoded(has_decoding: bool, dataset: str, aligned_top_share: float | None) -> bool:
    """Whether a run decoded its answers. A run with the `decoding` attribute did; one without either decoded
    with the aligned side alone or scored answers given: given where the dataset is another artifact (.h5),
    else decoded where the answer is the aligned side's top-1 at (nearly) every position, as greedy answers are."""
    if has_decoding:
        return True
    if dataset.endswith((".h5", ".hdf5")):
        return False
    return aligned_top_share is not None and aligned_top_share >= DECODED_BY_THE_ALIGNED_SIDE


def wilson(right: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of an accuracy of right / n (n > 0)."""
    p = right / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / (1 + Z95**2 / n)
    low = 0.0 if right == 0 else max(0.0, float(centre - half))  # at 0 or n, one bound is exact (rounding aside)
    high = 1.0 if right == n else min(1.0, float(centre + half))
    return low, high


def share_of_side(source: np.ndarray, side: int) -> float | None:
    """The share of positions emitted by `side` (None for a run without positions)."""
    return float(np.mean(source == side)) if len(source) else None


def experiment_of(
    attrs: dict[str, object], side_attrs: dict[str, dict[str, object]], task: str | None
) -> tuple[tuple[object, ...], str]:
    """(the experiment's key, its name): the dataset and task added to both sides' identity; the name says the
    pair of sides with their adapters."""
    dataset = str(attrs.get("dataset", "unknown dataset"))
    key = (dataset, task, *(identity(side_attrs[side]) for side in SIDE_NAMES))
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
    decoded: bool = True,
) -> RunFacts:
    key, name = experiment_of(attrs, side_attrs, judged.task if judged else None)
    short = str(attrs.get("name", run))
    return RunFacts(run, key, name, decoding[0], decoding[1], judged, share, decoded, short)


def is_experiment(facts: RunFacts) -> bool:
    """Whether a run belongs on the page: it decoded its answers, and has a task or was decoded by both sides."""
    return facts.decoded and (facts.judged is not None or facts.rule in MIXED_RULES)


def group(runs: list[RunFacts]) -> dict[str, list[RunFacts]]:
    """Experiment name -> its runs (in the order given); two experiments with the same name get a number. The
    experiments comparing the most decoding rules come first (the page opens on the first)."""
    by_key: dict[tuple[object, ...], list[RunFacts]] = {}
    for facts in runs:
        by_key.setdefault(facts.experiment, []).append(facts)
    named: dict[str, list[RunFacts]] = {}
    ordered = sorted(by_key.values(), key=lambda members: -len({f.rule for f in members}))
    for members in ordered:
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
    spec = RULES.get(rule)
    if spec is not None and all(key.name in params for key in spec.keys):
        return spec.describe(params)
    return ", ".join(f"{key} = {_number(value)}" for key, value in params.items())


def direction(facts: RunFacts) -> str | None:
    """The curve of accuracy against the share inserted a run is a point of (the registry's `curve`: "nudging",
    "aligned into base" for cross-sampling), or None."""
    spec = RULES.get(facts.rule)
    if spec is None or spec.curve is None or inserted_side(facts.rule, facts.params) is None:
        return None
    return spec.curve(facts.params)


def runs_table(runs: list[RunFacts]) -> pl.DataFrame:
    """One row per run: rule, parameters, task, answers judged, accuracy, the inserted side and its share."""
    rows = []
    for facts in runs:
        side = inserted_side(facts.rule, facts.params)
        low, high = interval(facts.judged)
        rows.append(
            {
                "run": facts.run,
                "rule": facts.rule,
                "parameters": parameters(facts.rule, facts.params),
                "task": facts.judged.task if facts.judged else None,
                "judged": facts.judged.judged if facts.judged else None,
                "accuracy": facts.judged.accuracy if facts.judged else None,
                "accuracy_low": low,
                "accuracy_high": high,
                "inserted_side": SIDE_OF[side] if side is not None else None,
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
        "accuracy_low": pl.Float64,
        "accuracy_high": pl.Float64,
        "inserted_side": pl.String,
        "share_inserted": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def interval(judged: Judged | None) -> tuple[float | None, float | None]:
    """The accuracy's 95 % Wilson interval (None, None without judged answers)."""
    return wilson(judged.right, judged.judged) if judged and judged.judged else (None, None)


def _judged(facts: RunFacts) -> bool:
    return facts.judged is not None and facts.judged.accuracy is not None


def _accuracy(facts: RunFacts) -> dict[str, object]:
    low, high = interval(facts.judged)
    return {
        "accuracy": facts.judged.accuracy,
        "accuracy_low": low,
        "accuracy_high": high,
        "judged": facts.judged.judged,
    }


ACCURACY_SCHEMA = {"accuracy": pl.Float64, "accuracy_low": pl.Float64, "accuracy_high": pl.Float64, "judged": pl.Int64}


def accuracy_points(runs: list[RunFacts]) -> pl.DataFrame:
    """The accuracy chart's points: every judged mixed run with its curve (direction), the share of tokens from
    the inserted side (x) and its accuracy with its interval, sorted along each curve; parameters for the hover."""
    rows = [
        {
            "curve": direction(facts),
            "run": facts.run,
            "parameters": parameters(facts.rule, facts.params),
            "share_inserted": facts.share_inserted,
            **_accuracy(facts),
        }
        for facts in runs
        if direction(facts) and _judged(facts) and facts.share_inserted is not None
    ]
    schema = {"curve": pl.String, "run": pl.String, "parameters": pl.String, "share_inserted": pl.Float64}
    return pl.DataFrame(rows, schema={**schema, **ACCURACY_SCHEMA}).sort("curve", "share_inserted")


def sweep_points(runs: list[RunFacts], rule: str) -> pl.DataFrame:
    """A sweep's points: every judged run of `rule` with the value of the key its sweep varies (the registry's
    `sweep`: alpha, tokens) as x, its accuracy and interval, and the share of the tokens the rule counts."""
    key = RULES[rule].sweep
    rows = [
        {
            "run": facts.run,
            "parameters": parameters(facts.rule, facts.params),
            "x": float(facts.params[key]),
            "share_counted": facts.share_inserted,
            **_accuracy(facts),
        }
        for facts in runs
        if facts.rule == rule and key in facts.params and _judged(facts)
    ]
    schema = {"run": pl.String, "parameters": pl.String, "x": pl.Float64, "share_counted": pl.Float64}
    return pl.DataFrame(rows, schema={**schema, **ACCURACY_SCHEMA}).sort("x")


def sweeps(runs: list[RunFacts]) -> list[str]:
    """The rules with a sweep (the registry's `sweep`) that runs of this experiment use."""
    return [name for name, spec in RULES.items() if spec.sweep and any(f.rule == name and _judged(f) for f in runs)]


def _problems(n: int) -> str:
    return f"{n} problem" + ("" if n == 1 else "s")


def references(runs: list[RunFacts]) -> pl.DataFrame:
    """The pure sides' accuracies (the charts' horizontal lines): run, rule ("aligned" / "base"), accuracy with
    its interval and size, and the line's label, which names the run and its size so that two runs of one side
    (say on 100 and on 200 problems) are told apart."""
    rows = [
        {
            "run": facts.run,
            "rule": facts.rule,
            **_accuracy(facts),
            "label": f"{facts.rule} alone ({facts.short or facts.run}, {_problems(facts.judged.judged)}): "
            f"{facts.judged.accuracy:.1%}",
        }
        for facts in runs
        if facts.rule in PURE_RULES and _judged(facts)
    ]
    schema = {"run": pl.String, "rule": pl.String, **ACCURACY_SCHEMA, "label": pl.String}
    return pl.DataFrame(rows, schema=schema)


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
