"""The dashboard's intervals: table text, whiskers, bands, paired differences, ranked examples that open a token."""

from __future__ import annotations

import json

import polars as pl
import pytest
from dashboard_helpers import ALPHA_LABEL, BETA_LABEL, open_page
from streamlit.testing.v1 import AppTest

from compute.core.intervals import Estimate
from dashboard import experiments, interval_charts, intervals


def figure(at: AppTest, title: str) -> dict:
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return next(s for s in specs if s["layout"]["title"]["text"].startswith(title))


def test_overview_shows_every_number_with_its_interval_and_whiskers(runs_dir):
    at = open_page("overview")
    shown = next(d.value for d in at.dataframe if "shifted t 0-9" in d.value.columns).set_index("run")
    # alpha: 2 of 5 and 1 of 4 shifted: a resample is both (1/3), ex-a twice (0.4) or ex-b twice (0.25)
    assert shown.loc[ALPHA_LABEL, "shifted"] == "33.3 % [25.0, 40.0]"
    assert shown.loc[ALPHA_LABEL, "KL max"].startswith("2.000 [")
    assert "aligned top-1 = base top-1" in shown.columns  # top-k 3 here: no top-5 or top-10 agreement
    bars = figure(at, "Shift shares (95 % intervals)")
    shifted = next(trace for trace in bars["data"] if trace["name"] == "shifted")  # horizontal: runs down the side
    alpha = shifted["hovertext"].index(ALPHA_LABEL)
    assert shifted["error_x"]["array"][alpha] == pytest.approx(0.4 - 1 / 3)
    assert shifted["error_x"]["arrayminus"][alpha] == pytest.approx(1 / 3 - 0.25)
    kl = next(trace for trace in figure(at, "Mean divergence per position")["data"] if trace["name"].startswith("KL"))
    # mean KL: both examples 4.1 / 9, ex-a twice 3.6 / 10, ex-b twice 4.6 / 8
    alpha = kl["hovertext"].index(ALPHA_LABEL)
    assert kl["error_x"]["array"][alpha] == pytest.approx(4.6 / 8 - 4.1 / 9, rel=1e-5)
    assert kl["error_x"]["arrayminus"][alpha] == pytest.approx(4.1 / 9 - 3.6 / 10, rel=1e-5)


def test_positions_bands_are_cut_where_few_answers_reach(runs_dir):
    at = open_page("positions")
    spec = figure(at, "Share shifted")
    band_low = [trace for trace in spec["data"] if trace.get("fill") == "tonexty"][0]
    assert all(v is None for v in band_low["y"])  # alpha and beta: at most 3 answers reach any position
    assert any("fewer than 5 answers" in c.value for c in at.caption)


def test_compare_shows_the_paired_difference_over_the_shared_answers(runs_dir):
    at = open_page("compare")
    paired = next(d.value for d in at.dataframe if "difference (a - b)" in d.value.columns)
    shifted = paired[paired["number"] == "shifted"].iloc[0]
    # the one shared answer, ex-a: beta shifts 0 of 5 positions, alpha 2 of 5
    assert shifted["difference (a - b)"] == "-40.0 pp" and shifted["answers"] == 1
    assert shifted["a − b"] == f"{BETA_LABEL} − {ALPHA_LABEL}"


def test_ranked_examples_open_the_token_view_at_the_largest_kl(runs_dir):
    at = open_page("examples")
    at.selectbox(key="ex-run").set_value(ALPHA_LABEL).run()
    ranked = next(d.value for d in at.dataframe if "max_kl" in d.value.columns)
    assert ranked["id"].tolist() == ["ex-b", "ex-a"]  # max KL 2.0 (t 3) and 1.0 (t 4)
    at.radio(key="ex-rank-by").set_value("mean KL").run()
    ranked = next(d.value for d in at.dataframe if "max_kl" in d.value.columns)
    assert ranked["id"].tolist() == ["ex-b", "ex-a"]  # 2.3 / 4 against 1.8 / 5
    at.button(key="ex-rank-open").click().run()
    assert not at.exception
    assert at.session_state["ex-search"] == "ex-b"
    assert at.number_input(key="ex-t-alpha.h5-1").value == 3


def test_pure_helpers():
    frame = pl.DataFrame(
        {"number": ["x", "x"], "t_start": [1, 0], "value": [0.1, 0.2], "low": [0.0, 0.1], "high": [0.2, 0.3]}
    ).with_columns(pl.Series("answers", [2, 9]))
    band = intervals.band_frame(frame, "x", "run")
    assert band["t_start"].to_list() == [0, 1] and band["few"].to_list() == [False, True]
    rows = intervals.difference_rows(
        {"share_shifted": Estimate(-0.01, -0.02, 0.005, 9), "mean_kl": Estimate(0.2, 0.1, 0.3, 9)}
    )
    assert rows["shown"].to_list() == ["no: includes 0", "yes"]
    assert rows["95 % interval"].to_list() == ["[-2.0, +0.5]", "[+0.100, +0.300]"]
    fig = interval_charts.whisker_bars(
        pl.DataFrame({"run": ["a"], "y": [0.5], "y_low": [0.4], "y_high": [0.7]}), "run", {"y": "y"}, "t"
    )
    assert fig.data[0].error_y.array == pytest.approx((0.2,)) and fig.data[0].error_y.arrayminus == pytest.approx(
        (0.1,)
    )


def test_experiments_accuracy_and_inserted_share_get_whiskers(tmp_path, monkeypatch):
    from dashboard_helpers import experiment_run

    directory = tmp_path / "runs"
    directory.mkdir()
    experiment_run(directory, "pure-aligned", [1, 1])
    # the aligned side wrote t 0 of ex-a (5 positions) and t 0-1 of ex-b (4): 1 of 5 and 2 of 4
    experiment_run(directory, "nudged", [1, 0], "nudging", [0, 1, 1, 1, 1, 0, 0, 1, 1], threshold=0.4)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = open_page("experiments")
    nudging = next(t for t in figure(at, "Accuracy against")["data"] if t.get("name") == "nudging")
    # one of two problems right: the accuracy's whiskers are its Wilson interval
    low, high = experiments.wilson(1, 2)
    assert (nudging["error_y"]["array"][0], nudging["error_y"]["arrayminus"][0]) == pytest.approx(
        (high - 0.5, 0.5 - low)
    )
    # the inserted share's whiskers, a bootstrap over the two problems: both (1/3), ex-a twice (0.2), ex-b twice (0.5)
    assert nudging["error_x"]["array"][0] == pytest.approx(0.5 - 1 / 3)
    assert nudging["error_x"]["arrayminus"][0] == pytest.approx(1 / 3 - 0.2)


def test_token_types_shows_base_favoured_and_forking_tokens(runs_dir):
    at = open_page("token_types")
    assert {"Base-favoured tokens", "Forking tokens"} <= {s.value for s in at.subheader}
    assert any("highest-entropy 20 % of positions" in c.value for c in at.caption)
