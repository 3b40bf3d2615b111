"""Mixed decoding and verifiable tasks on the dashboard: the reader's helpers, the Experiments page's pure
functions and the γ curve on hand-made inputs whose answers are known, and the pages on crafted artifacts."""

from __future__ import annotations

import json

import h5py
import numpy as np
import polars as pl
import pytest
from dashboard_helpers import ALPHA, APP, BETA, experiment_run, label, odd_files, write_run
from streamlit.testing.v1 import AppTest

from compute.core import aggregates
from compute.core.artifact.decoding import decoding
from compute.core.artifact.errors import ArtifactError
from compute.core.artifact.reader import open_artifact
from compute.core.artifact.verdicts import Judged, judged
from compute.core.categories import ALIGNED_TOP_CHOICE, ANSWER_TOKEN
from compute.core.token_types import token_types
from dashboard import experiments, render

PAIR = "aligned (chat) vs base (‘plain’)"
EXPERIMENT = f"arith.jsonl · arithmetic · {PAIR}"
OTHER_EXPERIMENT = "arith.jsonl · arithmetic · aligned (chat) vs other (‘plain’)"
OTHER_PAIR = "other-pair · aligned (chat) vs other (‘plain’)"
# alpha's 9 positions: ex-a is t 0-4 (Sure , here ↵ 42), ex-b t 0-3 (XSS **bold** $x$ However).
NUDGED = [0, 1, 1, 1, 1, 0, 0, 1, 1]  # the aligned side wrote Sure, XSS and **bold**: both t 0, one t 1


def write_experiment(directory):
    """One experiment of six runs (both pure sides, nudging, cross-sampling both ways), one run of the same task
    with another base model, and beta (no task, no decoding): 8 runs, all picked by default."""
    directory.mkdir(parents=True, exist_ok=True)
    experiment_run(directory, "pure-aligned", [1, 1])  # no decoding attribute: the aligned side alone
    experiment_run(directory, "pure-base", [0, 0], "base")
    experiment_run(directory, "nudged", [1, 0], "nudging", NUDGED, threshold=0.4)
    one, two = [1] * 9, [1] * 9
    one[5] = two[0] = two[5] = 0
    experiment_run(
        directory, "cs-aligned-10", [0, 1], "cross-sampling", one, insert="aligned", budget=0.1, js_threshold=0.25
    )
    experiment_run(directory, "cs-aligned-20", [1, 1], "cross-sampling", two, insert="aligned", budget=0.2)
    experiment_run(directory, "cs-base-10", [1, -1], "cross-sampling", [0, 0, 0, 1, 0, 0, 0, 0, 0], insert="base")
    experiment_run(directory, "other-pair", [0, 1], base_model="tiny/other")
    write_run(directory / "beta.h5", BETA)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    write_experiment(directory)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    return directory


# ---------------------------------------------------------------- the reader


def test_the_reader_gives_the_rule_its_parameters_and_the_verdicts(tmp_path):
    write_experiment(tmp_path)
    crossed = open_artifact(tmp_path / "cs-aligned-10.h5")
    assert decoding(crossed) == ("cross-sampling", {"insert": "aligned", "budget": 0.1, "js_threshold": 0.25})
    assert judged(crossed) == Judged("arithmetic", 1, 2)
    assert decoding(open_artifact(tmp_path / "pure-aligned.h5")) == ("aligned", {})  # no attribute: aligned alone
    assert judged(open_artifact(tmp_path / "cs-base-10.h5")).accuracy == 1.0  # the -1 is not judged
    assert judged(open_artifact(tmp_path / "beta.h5")) is None


@pytest.mark.parametrize(
    ("dataset", "values", "words"),
    [
        ("positions/source", np.array([0, 1, 3, 0, 0, 0, 0, 0, 0], np.int8), "/positions/source holds values other"),
        (
            "positions/decoding_logprobs",
            np.zeros((9, 2), np.float32),
            "/positions/decoding_logprobs has shape (9, 2), expected (9, 3)",
        ),
        ("positions/source", np.zeros(8, np.int8), "/positions/source has shape (8,), expected (9,)"),
        ("positions/source", np.zeros(9, np.float32), "/positions/source has type float32, expected integers"),
        ("examples/correct", np.array([1, 3], np.int8), "/examples/correct holds values other than -1, 0, 1"),
        ("examples/reference", np.array([1, 2]), "/examples/reference has type int64, expected strings"),
    ],
)
def test_the_reader_refuses_a_bad_source_or_verdict_in_one_line(tmp_path, dataset, values, words):
    path = write_run(tmp_path / "bad.h5", ALPHA)
    with h5py.File(path, "a") as f:
        f.create_dataset(dataset, data=values)
    with pytest.raises(ArtifactError) as caught:
        open_artifact(path)
    assert str(caught.value).startswith(f"{path}: {words}") and "\n" not in str(caught.value)


# ---------------------------------------------------------------- the γ curve


class Positions:
    """A hand-made Source: six positions whose base top-1 probabilities and categories are set below."""

    TOP1 = [0.02, 0.12, 0.32, 0.5, 0.9, np.nan]
    BASE_RANK = [5, 3, 0, 4, 0, 7]  # answer token: shifted at 0, 1, 3 and 5
    ALIGNED_TOP_AT = [0, 0, 3, 1, 3, 0]  # where the aligned top-1 stands in the base top-3 (3: absent): shifted 2, 4

    n_positions = 6

    def has(self, dataset: str) -> bool:
        return True

    def read(self, dataset: str, rows: slice | None = None) -> np.ndarray:
        aligned_top = np.arange(6) + 10
        base_ids = np.full((6, 3), 99)
        for i, at in enumerate(self.ALIGNED_TOP_AT):
            if at < 3:
                base_ids[i, at] = aligned_top[i]
        columns = {
            "sides/base/topk_logprobs": np.log(np.array([[p, 0.01, 0.01] for p in self.TOP1])),  # 0.5 stays 0.5
            "sides/base/rank": np.array(self.BASE_RANK, np.int32),
            "sides/aligned/topk_ids": np.stack([aligned_top, aligned_top + 100, aligned_top + 200], axis=1),
            "sides/base/topk_ids": base_ids,
        }
        return columns[dataset][rows if rows is not None else slice(None)]


@pytest.mark.parametrize("chunk_rows", [1 << 20, 4, 1])
def test_base_uncertainty_counts_what_the_hand_made_positions_say(monkeypatch, chunk_rows):
    monkeypatch.setattr(aggregates, "CHUNK_ROWS", chunk_rows)
    table = aggregates.base_uncertainty(Positions())
    answer = table.filter(definition=ANSWER_TOKEN).filter(pl.col("gamma").is_in([0.05, 0.15, 0.35, 0.55, 0.95]))
    assert answer["uncertain"].to_list() == [1, 2, 3, 4, 5]  # 0.02 | 0.12 | 0.32 | 0.5 | 0.9; NaN never
    assert answer["shifted_uncertain"].to_list() == [1, 2, 2, 3, 3]  # shifted: 0.02, 0.12, 0.5 (and NaN)
    assert set(answer["shifted"]) == {4} and set(answer["positions"]) == {6}
    assert table.filter(definition=ANSWER_TOKEN, gamma=0.5)["uncertain"].to_list() == [3]  # 0.5 is not below 0.5
    aligntds = table.filter(definition=ALIGNED_TOP_CHOICE).filter(pl.col("gamma").is_in([0.3, 0.35, 0.95]))
    assert aligntds["shifted_uncertain"].to_list() == [0, 1, 2]  # shifted: 0.32 and 0.9
    assert table.height == 2 * 19 and table["gamma"].to_list()[:3] == [0.05, 0.1, 0.15]
    given = {
        definition: aggregates.category_column(Positions(), definition)
        for definition in (ANSWER_TOKEN, ALIGNED_TOP_CHOICE)
    }
    assert aggregates.base_uncertainty(Positions(), given).equals(table)  # compute()'s way: categories derived once


def test_the_gamma_curve_is_the_two_shares_and_null_without_shifts():
    table = pl.DataFrame(
        {
            "gamma": [0.1, 0.5],
            "positions": [10, 10],
            "uncertain": [2, 5],
            "shifted": [4, 0],
            "shifted_uncertain": [3, 0],
        }
    )
    curve = experiments.gamma_curve(table)
    assert curve["share_uncertain"].to_list() == [0.2, 0.5]
    assert curve["share_of_shifted"].to_list() == [0.75, None]


def test_stored_aggregates_without_the_curve_are_still_used_and_the_curve_is_computed_alone(tmp_path, monkeypatch):
    from dashboard import load

    path = tmp_path / "stored.h5"
    write_run(path, ALPHA)
    expected = aggregates.base_uncertainty(open_artifact(path))
    with h5py.File(path, "a") as f:  # aggregates as a writer of before the curve stored them
        aggregates.write_tables(f.create_group(aggregates.GROUP), aggregates.compute(aggregates.OpenFile(f)))
        del f[f"{aggregates.GROUP}/base_uncertainty"]
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(tmp_path))
    (run,), _ = load.open_runs(load.scan(tmp_path)[0])
    assert load.aggregates_source(run) == "artifact"
    stored = aggregates.stored(path, run.key.size, run.key.mtime_ns)
    assert "base_uncertainty" not in stored and "summary" in stored
    shown = load.table(run.key, "base_uncertainty", ANSWER_TOKEN)
    assert shown.equals(expected.filter(definition=ANSWER_TOKEN).drop("definition"))
    assert shown.filter(gamma=0.55)["uncertain"].to_list() == [9]  # every base top-1 is 0.5 in alpha


# ---------------------------------------------------------------- grouping and the experiment's tables


def facts(name: str, rule: str, params: dict, correct: tuple[int, int] | None, share=None, **changes):
    attrs = {"dataset": changes.pop("dataset", "arith.jsonl")}
    sides = {
        "aligned": {"model": "tiny/aligned", "template": "chat"},
        "base": {"model": changes.pop("base_model", "tiny/base"), "template": "plain", **changes},
    }
    verdicts = Judged(changes.pop("task", "arithmetic"), *correct) if correct else None
    return experiments.run_facts(name, attrs, sides, (rule, params), verdicts, share)


def test_runs_are_grouped_by_dataset_task_and_both_sides_with_adapters():
    runs = [
        facts("a", "aligned", {}, (2, 4)),
        facts("b", "base", {}, (1, 4)),
        facts("other model", "aligned", {}, (2, 4), base_model="tiny/other"),
        facts("other data", "aligned", {}, (2, 4), dataset="gsm.jsonl"),
        facts("adapter", "aligned", {}, (2, 4), adapter="runs/adapters/sft"),
        facts("no task", "nudging", {"threshold": 0.3}, None, 0.1),
        facts("same name", "aligned", {}, (2, 4), gguf_file="q4/base.gguf"),
    ]
    groups = experiments.group(runs)
    assert {name: [f.run for f in members] for name, members in groups.items()} == {
        EXPERIMENT: ["a", "b"],
        "arith.jsonl · arithmetic · aligned (chat) vs other (‘plain’)": ["other model"],
        f"gsm.jsonl · arithmetic · {PAIR}": ["other data"],
        f"arith.jsonl · arithmetic · {PAIR} (base + sft)": ["adapter"],
        f"arith.jsonl · no task · {PAIR}": ["no task"],
        f"{EXPERIMENT} #2": ["same name"],  # another base model file of the same name
    }


def test_parameters_in_words():
    assert experiments.parameters("nudging", {"threshold": 0.4}) == "γ = 0.4"
    assert experiments.parameters("base", {}) == "the base side alone"
    crossed = {"insert": "base", "budget": 0.05, "js_threshold": 0.0123, "share": 0.048}
    words = "base into aligned, budget 5.0% (JS ≥ 0.0123 nats), achieved 4.8%"
    assert experiments.parameters("cross-sampling", crossed) == words
    assert experiments.parameters("beam", {"width": 4}) == "width = 4"


def test_the_accuracy_chart_has_a_curve_per_direction_points_for_nudging_and_the_pure_sides_as_references():
    runs = [
        facts("aligned", "aligned", {}, (9, 10)),
        facts("base", "base", {}, (3, 10)),
        facts("a20", "cross-sampling", {"insert": "aligned", "budget": 0.2}, (8, 10), 0.21),
        facts("a5", "cross-sampling", {"insert": "aligned", "budget": 0.05}, (5, 10), 0.05),
        facts("b5", "cross-sampling", {"insert": "base", "budget": 0.05}, (6, 10), 0.04),
        facts("nudge", "nudging", {"threshold": 0.4}, (7, 10), 0.08),
        facts("untasked", "nudging", {"threshold": 0.3}, None, 0.1),
    ]
    points = experiments.accuracy_points(runs)
    assert points.select("curve", "run", "share_inserted", "accuracy").rows() == [
        ("aligned into base", "a5", 0.05, 0.5),
        ("aligned into base", "a20", 0.21, 0.8),
        ("base into aligned", "b5", 0.04, 0.6),
        ("nudging", "nudge", 0.08, 0.7),
    ]
    assert experiments.references(runs).select("run", "rule", "accuracy", "judged").rows() == [
        ("aligned", "aligned", 0.9, 10),
        ("base", "base", 0.3, 10),
    ]
    table = experiments.runs_table(runs).filter(pl.col("run").is_in(["b5", "untasked"]))
    assert table.select("inserted_side", "accuracy", "share_inserted").rows() == [
        ("base", 0.6, 0.04),
        ("aligned", None, 0.1),
    ]


def test_where_the_inserted_tokens_are_by_position_and_by_token_type():
    positions = pl.DataFrame(
        {"t": [0, 1, 2, 3, 4, 0, 1, 2, 3], "token_id": [1, 2, 3, 4, 5, 6, 7, 8, 9], "source": NUDGED},
        schema_overrides={"source": pl.Int8},
    )
    by_position = experiments.inserted_by_position(positions, experiments.ALIGNED)
    assert by_position.select("t_start", "positions", "inserted", "share_inserted").rows() == [
        (0, 2, 2, 1.0),
        (1, 2, 1, 0.5),
        (2, 2, 0, 0.0),
        (3, 2, 0, 0.0),
        (4, 1, 0, 0.0),
    ]
    from dashboard_helpers import TOKENS

    types = token_types(
        pl.DataFrame({"id": list(TOKENS), "text": list(TOKENS.values())}, schema_overrides={"id": pl.Int32})
    )
    by_type = experiments.inserted_by_type(
        positions.with_columns(pl.col("token_id").cast(pl.Int32)), types, experiments.ALIGNED
    )
    rows = {row["type"]: row for row in by_type.iter_rows(named=True)}
    assert {kind: (row["positions"], row["inserted"]) for kind, row in rows.items()} == {
        "politeness / safety": (1, 1),  # Sure
        "code": (1, 1),  # the <img ...> token
        "other word": (3, 1),  # " here", "**bold**", "$x$"
        "punctuation": (1, 0),
        "whitespace / newline": (1, 0),
        "number": (1, 0),
        "discourse / transition": (1, 0),
    }
    assert rows["other word"]["share_inserted"] == pytest.approx(1 / 3)
    assert rows["code"]["share_of_inserted"] == pytest.approx(1 / 3)
    assert experiments.share_of_side(np.array(NUDGED), experiments.BASE) == pytest.approx(6 / 9)


# ---------------------------------------------------------------- the pages


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    if page != "overview":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.warning and not at.error, [w.value for w in [*at.warning, *at.error]]
    return at


def table(at: AppTest, name: str):
    return next(e for e in at.expander if e.label == f"Table: {name}").dataframe[0].value


def test_the_experiments_page_groups_the_runs_and_draws_accuracy_against_the_share_inserted(runs_dir):
    at = open_page("experiments")
    assert any(c.value.replace("\\", "").endswith(f"(only the γ curve below): {label('beta')}.") for c in at.caption)
    assert at.selectbox(key="exp-group").options == [EXPERIMENT, OTHER_EXPERIMENT]
    runs = at.dataframe[0].value.set_index("run")
    assert len(runs) == 6
    assert runs.loc[label("nudged"), ["rule", "parameters", "accuracy"]].tolist() == ["nudging", "γ = 0.4", 0.5]
    assert runs.loc[label("nudged"), "share_inserted"] == pytest.approx(3 / 9)
    assert runs.loc[label("cs-base-10"), ["inserted_side", "judged", "accuracy"]].tolist() == ["base", 1, 1.0]
    assert runs.loc[label("cs-base-10"), "share_inserted"] == pytest.approx(1 / 9)
    assert runs.loc[label("cs-aligned-10"), "parameters"] == "aligned into base, budget 10.0% (JS ≥ 0.25 nats)"
    assert runs.loc[label("pure-aligned"), ["rule", "accuracy"]].tolist() == ["aligned", 1.0]

    accuracy = table(at, "experiment-accuracy")
    curves = accuracy[accuracy["curve"].notna()]
    assert curves["curve"].tolist() == ["aligned into base", "aligned into base", "base into aligned", "nudging"]
    assert curves["share_inserted"].tolist() == pytest.approx([1 / 9, 2 / 9, 1 / 9, 3 / 9])
    assert curves["accuracy"].tolist() == [0.5, 1.0, 1.0, 0.5]
    references = accuracy[accuracy["curve"].isna()]
    assert references[["rule", "accuracy"]].values.tolist() == [["aligned", 1.0], ["base", 0.0]]

    by_position = table(at, "experiment-inserted-by-position")
    nudged = by_position[by_position["run"] == label("nudged")]
    assert nudged["share_inserted"].tolist() == pytest.approx([1.0, 0.5, 0, 0, 0])
    by_type = table(at, "experiment-inserted-by-type")
    nudged = by_type[by_type["run"] == label("nudged")].set_index("type")
    assert nudged.loc["politeness / safety", "share_inserted"] == 1.0
    assert set(by_position["run"]) == {label(n) for n in ("nudged", "cs-aligned-10", "cs-aligned-20", "cs-base-10")}

    at.selectbox(key="exp-group").set_value(OTHER_EXPERIMENT).run()
    assert not at.exception
    assert at.dataframe[0].value["run"].tolist() == [OTHER_PAIR]


def test_the_gamma_curve_follows_the_sidebar_definition_for_every_run(runs_dir):
    at = open_page("experiments")
    curve = table(at, "base-uncertainty")
    assert len(set(curve["run"])) == 8 and len(curve) == 8 * 19
    beta = curve[curve["run"] == label("beta")].set_index("gamma")
    assert beta.loc[0.45, ["share_uncertain", "share_of_shifted"]].tolist() == [0.0, 0.0]
    assert beta.loc[0.55, ["share_uncertain", "share_of_shifted"]].tolist() == [1.0, 1.0]
    assert beta.loc[0.55, "shifted"] == 1  # beta: one position of base rank 3+
    at.sidebar.radio(key="category-definition").set_value(ALIGNED_TOP_CHOICE).run()
    curve = table(at, "base-uncertainty")
    beta = curve[curve["run"] == label("beta")].set_index("gamma")
    assert beta.loc[0.55, "shifted"] == 0 and np.isnan(beta.loc[0.55, "share_of_shifted"])


def test_runs_without_task_or_decoding_get_one_line_and_the_curve(tmp_path, monkeypatch):
    write_run(tmp_path / "alpha.h5", ALPHA)
    write_run(tmp_path / "beta.h5", BETA)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(tmp_path))
    at = open_page("experiments")
    assert at.info[0].value == "None of the picked runs has a task or was decoded by both sides together."
    assert len(table(at, "base-uncertainty")) == 2 * 19


def test_the_examples_page_colours_tokens_by_the_side_that_emitted_them(runs_dir):
    at = open_page("examples")
    at.selectbox(key="ex-run").set_value(label("nudged")).run()
    assert "emitting side" in at.radio(key="ex-colour").options
    at.radio(key="ex-colour").set_value("emitting side").run()
    assert not at.exception
    answer = at.html[0].value
    aligned, base = render.side_color(experiments.ALIGNED), render.side_color(experiments.BASE)
    assert aligned != base
    assert f'background:{aligned}">aligned side' in answer and f'background:{base}">base side' in answer
    tokens = answer.split("<br>", 1)[1]
    assert [tokens.count(f"background:{aligned}"), tokens.count(f"background:{base}")] == [1, 4]  # ex-a: Sure only
    assert "emitted by the aligned side" in tokens and "emitted by the base side" in tokens
    at.number_input(key="ex-t-nudged.h5-0").set_value(1).run()
    assert "emitted by the base side" in at.html[1].value
    at.selectbox(key="ex-run").set_value(label("beta")).run()  # no source: the choice goes, categories colour
    assert not at.exception
    assert "emitting side" not in at.radio(key="ex-colour").options
    assert "emitted by" not in at.html[0].value


def test_the_overview_shows_accuracy_for_runs_with_a_task(runs_dir):
    rows = open_page("overview").dataframe[0].value.set_index("run")
    assert rows.loc[label("pure-aligned"), ["task", "accuracy"]].tolist() == ["arithmetic", 1.0]
    assert rows.loc[label("pure-base"), "accuracy"] == 0.0
    assert rows.loc[label("cs-base-10"), "accuracy"] == 1.0  # one judged, right
    assert rows.loc[label("beta"), ["task", "accuracy"]].isna().all()


def test_odd_experiment_runs_show_what_they_have(tmp_path, monkeypatch):
    """A judged nudging run without positions, and a cross-sampling run inserting an unknown side, none judged."""
    odd_files(tmp_path)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.sidebar.multiselect[0].set_value(at.sidebar.multiselect[0].options).run()
    at.switch_page("app_pages/experiments.py").run()
    assert not at.exception and not at.error
    rows = at.dataframe[0].value.set_index("run")
    assert rows.loc[label("no_positions"), ["parameters", "judged", "accuracy"]].tolist() == ["γ = 0.4", 1, 0.0]
    assert rows.loc[label("odd_decoding"), ["parameters", "judged"]].tolist() == ["sideways into ?, budget ?", 0]
    assert rows[["accuracy", "share_inserted"]].isna().values.tolist() == [[False, True], [True, True]]
    assert not any(e.label.startswith("Table: experiment-inserted") for e in at.expander)  # nothing to break down


def test_an_experiment_takes_in_its_runs_not_picked_in_the_sidebar(runs_dir):
    at = open_page("experiments")
    picked = [label("nudged"), label("beta")]  # one run of the experiment and a plain run
    at.sidebar.multiselect[0].set_value(picked).run()
    assert at.selectbox(key="exp-group").options == [EXPERIMENT]
    assert len(at.dataframe[0].value) == 6  # the experiment's five unpicked runs are in
    assert any("5 of the experiment's 6 runs are not picked" in c.value.replace("\\", "") for c in at.caption)
    assert set(table(at, "base-uncertainty")["run"]) == set(picked)  # the γ curve stays on the picked runs
    at.checkbox(key="exp-unpicked").uncheck().run()
    assert at.dataframe[0].value["run"].tolist() == [label("nudged")]


def test_the_default_pick_puts_runs_decoded_by_one_side_before_mixed_ones(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    write_experiment(directory)  # 8 runs: pure-base, nudged and the three cs-* carry a decoding attribute
    for name in ("x1", "x2", "x3"):
        write_run(directory / f"{name}.h5", ALPHA)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = open_page("overview")
    plain = [label(n) for n in ("pure-aligned", "beta", "x1", "x2", "x3")] + [OTHER_PAIR]
    picked = at.sidebar.multiselect[0].value
    assert len(picked) == 8 and set(plain) <= set(picked)  # by name alone, x1-x3 would be left out


# ---------------------------------------------------------------- sweeps, intervals, answers given


def test_the_wilson_interval_of_an_accuracy():
    assert experiments.wilson(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)  # z^2 / (n + z^2) above 0 of 10
    assert experiments.wilson(0, 100)[0] == 0.0 and experiments.wilson(100, 100)[1] == 1.0  # not 3e-18 off
    assert experiments.wilson(37, 100) == pytest.approx((0.28182, 0.46779), abs=1e-5)
    low, high = experiments.wilson(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(1 - 0.27753, abs=1e-5)


def test_a_run_without_decoding_decoded_only_where_its_answers_are_the_aligned_top_1():
    assert experiments.answers_decoded(True, "arith.jsonl", None)
    assert experiments.answers_decoded(False, "arith.jsonl", 1.0)  # the aligned side's greedy answers
    assert experiments.answers_decoded(False, "arith.jsonl", 0.995)  # a near tie flipped
    assert not experiments.answers_decoded(False, "arith.jsonl", 0.84)  # another side's answers, teacher-forced
    assert not experiments.answers_decoded(False, "grpo-answers.h5", 1.0)  # answers from another artifact


def test_sweep_points_take_the_registrys_key_and_the_share_it_counts():
    logit = {"temperature": 0.0, "top_p": 1.0, "seed": 0}
    runs = [
        facts("a1.5", "logit-arithmetic", {"alpha": 1.5, **logit}, (6, 10), 0.3),
        facts("a0.5", "logit-arithmetic", {"alpha": 0.5, **logit}, (4, 10), 0.1),
        facts("k2", "prefill", {"tokens": 2}, (2, 10), 0.2),
        facts("nudge", "nudging", {"threshold": 0.4}, (7, 10), 0.08),
    ]
    assert experiments.sweeps(runs) == ["logit-arithmetic", "prefill"]
    points = experiments.sweep_points(runs, "logit-arithmetic")
    assert points.select("run", "x", "accuracy", "share_counted").rows() == [
        ("a0.5", 0.5, 0.4, 0.1),
        ("a1.5", 1.5, 0.6, 0.3),
    ]
    assert points["accuracy_low"][0] == pytest.approx(experiments.wilson(4, 10)[0])
    assert experiments.sweep_points(runs, "prefill")["x"].to_list() == [2.0]
    assert experiments.inserted_side("logit-arithmetic", runs[0].params) == 2  # "mixed": neither side's top-1
    assert experiments.parameters("prefill", {"tokens": 2}).startswith("prefill: the aligned side writes the first 2")


def write_sweep_experiment(directory):
    """A one-rule experiment first by name (another base model), then an experiment of both pure sides, two
    logit-arithmetic runs and a prefill run, a second aligned-alone run on one problem, and a run scored over
    answers from another artifact (teacher-forced)."""
    directory.mkdir(parents=True, exist_ok=True)
    experiment_run(directory, "a-lone", [1, 0], base_model="tiny/other")
    experiment_run(directory, "pure-aligned", [1, 1], "aligned")
    experiment_run(directory, "pure-aligned-one", [1, -1], "aligned")
    experiment_run(directory, "pure-base", [0, 0], "base")
    logit = {"temperature": 0.0, "top_p": 1.0, "seed": 0}
    experiment_run(directory, "alpha-05", [1, 0], "logit-arithmetic", [0, 2, 1, 1, 1, 0, 0, 1, 2], alpha=0.5, **logit)
    experiment_run(directory, "alpha-15", [1, 1], "logit-arithmetic", [0, 2, 2, 2, 0, 0, 2, 2, 2], alpha=1.5, **logit)
    experiment_run(directory, "prefill-2", [0, 1], "prefill", [0, 0, 1, 1, 1, 0, 0, 1, 1], tokens=2)
    forced = experiment_run(directory, "forced", [1, 1])
    with h5py.File(forced, "r+") as f:
        f.attrs["dataset"] = "pure-aligned.h5"  # the answers of another run


def test_the_experiments_page_opens_on_an_experiment_of_several_rules_with_labelled_references(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    write_sweep_experiment(directory)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.sidebar.multiselect[0].set_value(at.sidebar.multiselect[0].options).run()
    at.switch_page("app_pages/experiments.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert at.selectbox(key="exp-group").value == EXPERIMENT  # six runs of four rules, not the lone run
    runs = at.dataframe[0].value.set_index("run")
    assert label("forced") not in runs.index and label("a-lone") not in runs.index
    assert any("teacher-forced), in no experiment: " + label("forced") in c.value.replace("\\", "") for c in at.caption)
    assert runs.loc[label("alpha-05"), ["inserted_side", "accuracy"]].tolist() == ["mixed", 0.5]
    assert runs.loc[label("alpha-05"), "share_inserted"] == pytest.approx(2 / 9)

    alpha = table(at, "experiment-logit-arithmetic")
    swept = alpha[alpha["x"].notna()]
    assert swept[["x", "accuracy", "share_counted"]].values.ravel().tolist() == pytest.approx(
        [0.5, 0.5, 2 / 9, 1.5, 1.0, 6 / 9]
    )
    lines = alpha[alpha["x"].isna()].set_index("run")["label"]
    assert lines[label("pure-aligned")] == "aligned alone (pure-aligned, 2 problems): 100.0%"
    assert lines[label("pure-aligned-one")] == "aligned alone (pure-aligned-one, 1 problem): 100.0%"
    assert lines[label("pure-base")] == "base alone (pure-base, 2 problems): 0.0%"
    assert table(at, "experiment-prefill")["x"].dropna().tolist() == [2.0]

    drawn = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        drawn[spec["layout"]["title"]["text"]] = spec["layout"]
    accuracy = drawn["logit-arithmetic: accuracy against alpha"]
    assert accuracy["yaxis"]["range"] == [0, 1.02]  # accuracy is drawn on 0 to 100 %, never below
    assert sorted(a["text"] for a in accuracy["annotations"]) == sorted(lines.tolist())
    assert drawn["logit-arithmetic: share of tokens neither side's top-1 against alpha"]["yaxis"]["range"] == [0, 1.02]


def test_the_examples_page_names_a_logit_rules_mixed_tokens(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    write_sweep_experiment(directory)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = open_page("examples")
    at.selectbox(key="ex-run").set_value(label("alpha-05")).run()
    at.radio(key="ex-colour").set_value("emitting side").run()
    assert not at.exception, [e.value for e in at.exception]
    tokens = at.html[0].value.split("<br>", 1)[1]
    assert tokens.count(f"background:{render.side_color(2)}") == 1  # ex-a's t 1, the one mixed token of ex-a
    assert "emitted by the mixture (neither side" in tokens
