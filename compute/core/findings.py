"""What `compute report` says about runs, as data: every headline number with its interval, where the change
concentrates, and the paired comparisons of runs over the same answers or the same problems.

`document(paths)` is the JSON of `compute report --json` (docs/report-json.md); the markdown report
(compute/core/report.py) formats the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import polars as pl

from compute.core import branching, comparisons, concentration, control, estimates, example_sums, intervals, tables
from compute.core.artifact.branching_samples import has_branching, read_branching
from compute.core.artifact.decoding import decoding
from compute.core.artifact.reader import Artifact, open_artifact
from compute.core.categories import ANSWER_TOKEN, DEFINITIONS
from compute.core.intervals import Estimate

FORMAT = "tds-report/1"
TOP_EXAMPLES = 10


@dataclass
class RunFindings:
    artifact: Artifact
    sums: pl.DataFrame  # example_sums, both definitions
    numbers: dict[str, dict[str, Estimate]]  # definition -> number -> estimate
    branching: dict[str, Estimate] | None

    @property
    def name(self) -> str:
        return self.artifact.name

    def sums_of(self, definition: str) -> pl.DataFrame:
        return self.sums.filter(pl.col("definition") == definition).sort("example")


def run_findings(artifact: Artifact, resamples: int = estimates.RESAMPLES, seed: int = estimates.SEED) -> RunFindings:
    sums = example_sums.compute(artifact)
    weights = intervals.resample_weights(artifact.n_examples, resamples, seed)
    quantiles = estimates.quantile_rows(artifact, weights)
    numbers = {}
    for definition in DEFINITIONS:
        part = sums.filter(pl.col("definition") == definition).sort("example")
        numbers[definition] = {**estimates.estimates(part, weights), **quantiles}
    bf = None
    if has_branching(artifact):
        sides = {side: read_branching(artifact, side) for side in ("aligned", "base")}
        bf = branching.branching_estimates(sides["aligned"], sides["base"], weights)
    return RunFindings(artifact, sums, numbers, bf)


def share_answers(artifacts: list[Artifact]) -> bool:
    """True when every run holds the same examples with the same answer token ids (a stage chain; pairs scoring
    one answer set)."""
    hashes = [_answer_hashes(a) for a in artifacts]
    return all(h == hashes[0] for h in hashes[1:])


def _answer_hashes(artifact: Artifact) -> list[str]:
    ids = artifact.read("examples/id").tolist()
    return tables.answer_hashes(ids, artifact.read("examples/offsets"), artifact.read("positions/token_id"))


def inserted_side(rule: str, params: dict[str, object]) -> str | None:
    """The side whose tokens a mixed decoding rule inserts: nudging inserts the aligned side's."""
    return {"nudging": "aligned", "cross-sampling": params.get("insert")}.get(rule)  # type: ignore[return-value]


def _json_number(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def as_json(e: Estimate) -> dict:
    return {"value": _json_number(e.value), "low": _json_number(e.low), "high": _json_number(e.high), "n": e.n}


def run_document(f: RunFindings) -> dict:
    artifact = f.artifact
    read = artifact.read
    entropy = {side: read(f"sides/{side}/entropy").astype(np.float64) for side in ("aligned", "base")}
    rule, params = decoding(artifact)
    ids = read("examples/id").tolist()
    top = concentration.ranked_examples(f.sums_of(ANSWER_TOKEN), ids, "max_kl", TOP_EXAMPLES)
    favoured = concentration.base_favoured(
        read("positions/token_id"), read("sides/aligned/logprob"), read("sides/base/logprob"), artifact.token_texts()
    )
    return {
        "name": f.name,
        "path": str(artifact.path),
        "examples": artifact.n_examples,
        "positions": artifact.n_positions,
        "decoding": {"rule": rule, "inserted_side": inserted_side(rule, params)},
        "numbers": {d: {k: as_json(v) for k, v in numbers.items()} for d, numbers in f.numbers.items()},
        "branching": {k: as_json(v) for k, v in f.branching.items()} if f.branching else None,
        "forking_tokens": concentration.forking_overlap(entropy["aligned"], entropy["base"]),
        "entropy_change_by_base_decile": concentration.entropy_change_by_decile(
            entropy["aligned"], entropy["base"]
        ).to_dicts(),
        "base_favoured_tokens": favoured.to_dicts(),
        "top_examples_by_max_kl": top.select("id", "example", "max_kl", "t").to_dicts(),
    }


def paired_document(a: RunFindings, b: RunFindings, resamples: int, seed: int) -> dict:
    weights = intervals.resample_weights(a.artifact.n_examples, resamples, seed)
    differences = {
        d: {k: as_json(v) for k, v in estimates.paired_differences(a.sums_of(d), b.sums_of(d), weights).items()}
        for d in DEFINITIONS
    }
    return {"a": a.name, "b": b.name, "examples": a.artifact.n_examples, "differences": differences}


def judged_document(a: RunFindings, b: RunFindings, seed: int) -> dict | None:
    """Two judged runs over the same problems (one dataset and task; examples matched by id)."""
    judged = a.artifact.has("examples/correct") and b.artifact.has("examples/correct")
    same = all(a.artifact.attrs.get(key) == b.artifact.attrs.get(key) for key in ("dataset", "task"))
    if not (judged and same):
        return None
    pair = comparisons.judged_pair(
        a.artifact.read("examples/id").tolist(),
        a.artifact.read("examples/correct"),
        b.artifact.read("examples/id").tolist(),
        b.artifact.read("examples/correct"),
        seed,
    )
    if pair is None:
        return None
    return {
        "a": a.name,
        "b": b.name,
        "problems": pair.difference.n,
        "accuracy_difference": as_json(pair.difference),
        "right_only_in_a": pair.only_a,
        "right_only_in_b": pair.only_b,
        "mcnemar_exact_p": pair.p_value,
    }


def comparisons_of(found: list[RunFindings], resamples: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(paired differences of every two runs over the same answers, paired accuracy of every two judged runs
    over the same problems)."""
    paired, judged = [], []
    for a, b in combinations(found, 2):
        if share_answers([a.artifact, b.artifact]):
            paired.append(paired_document(a, b, resamples, seed))
        made = judged_document(a, b, seed)
        if made is not None:
            judged.append(made)
    return paired, judged


def document(
    paths: list[Path | str], resamples: int = estimates.RESAMPLES, seed: int = estimates.SEED
) -> dict[str, object]:
    found = [run_findings(open_artifact(p), resamples, seed) for p in paths]
    paired, judged = comparisons_of(found, resamples, seed)
    return {
        "format": FORMAT,
        "interval": {
            "level": intervals.LEVEL,
            "resamples": resamples,
            "seed": seed,
            "method": "percentile cluster bootstrap over examples (judged runs: over problems)",
        },
        "runs": [run_document(f) for f in found],
        "paired_differences": paired,
        "judged_pairs": judged,
        "controls": control.controls_json([f.artifact for f in found], resamples, seed),
    }
