"""A newcomer's first hour: the runs the dashboard opens on, short run names, what the picked runs show, labels
that say what differs between the sides, readable axes, and a click on a token."""

from __future__ import annotations

import json

import polars as pl
import pytest
from dashboard_helpers import (
    ALPHA,
    ALPHA_LABEL,
    APP,
    BETA,
    BETA_LABEL,
    PLAIN_SIDES,
    TOKENS,
    TOP_K,
    chain_runs,
    label,
    small_runs,
    write_run,
)
from streamlit.testing.v1 import AppTest

from compute.core.artifact.records import RunMeta
from compute.core.artifact.writer import write_artifact
from compute.core.describe import describe, side_differences
from dashboard import charts, featured, names, stats, story, tokens
from dashboard.labels import pair

# ------------------------------------------------------------------------------------------------ default pick


def listed(*runs: tuple[str, list[str], bool]) -> list[featured.Listed]:
    return [featured.Listed(f"{name} · x", name, tags, decoded) for name, tags, decoded in runs]


def test_the_default_pick_is_the_listed_runs_then_the_tagged_then_teacher_forced_first():
    runs = listed(("a-mixed", [], True), ("b", ["featured"], False), ("c", [], False), ("d", ["featured"], False))
    assert featured.default_pick(runs, ["d", "nope", "a-mixed", "d"]) == (
        ["d · x", "a-mixed · x"],
        "the runs featured.txt lists",
    )
    assert featured.default_pick(runs, None)[0] == ["b · x", "d · x"]
    assert featured.default_pick(runs, ["nope"])[0] == ["b · x", "d · x"]  # a list naming no run here: the tags
    plain = listed(*[(f"r{i:02d}", [], i < 3) for i in range(12)])
    picked, why = featured.default_pick(plain, [])
    assert picked == [f"r{i:02d} · x" for i in range(3, 11)] and why.startswith("teacher-forced runs first")


def test_featured_txt_is_one_name_a_line_with_comments(tmp_path):
    assert featured.declared(tmp_path) is None
    (tmp_path / featured.FILE).write_text("# the story\nalpha  # first\n\n  beta\n")
    assert featured.declared(tmp_path) == ["alpha", "beta"]


def test_the_app_opens_on_the_folder_s_featured_runs(tmp_path, monkeypatch):
    for name in ("alpha", "beta", "gamma"):
        write_run(tmp_path / f"{name}.h5", ALPHA)
    (tmp_path / featured.FILE).write_text("gamma\nbeta\n")
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert at.sidebar.multiselect[0].value == [label("gamma"), label("beta")]
    assert "Opened on the runs featured.txt lists." in [c.value for c in at.sidebar.caption]
    assert at.dataframe[0].value["run"].tolist() == [label("gamma"), label("beta")]  # in the order listed


def test_the_overview_says_what_the_picked_runs_show(tmp_path, monkeypatch):
    write_run(tmp_path / "run-alpha.h5", ALPHA)  # 3 of 9 positions shifted (t 0, 4 and 8... by example)
    write_run(tmp_path / "run-beta.h5", BETA)  # 1 of 8 shifted
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    text = at.markdown[0].value.replace("\\", "")
    assert text.startswith("In the 2 runs shown, 44.4% to 75.0% of the answer positions are unshifted")
    assert "12.5% (beta) to 33.3% (alpha) shifted" in text
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["data"][0]["y"] == ["alpha", "beta"]  # short names on the axis ...
    assert spec["data"][0]["hovertext"] == [label("run-alpha"), label("run-beta")]  # ... the labels on hover


# ------------------------------------------------------------------------------------------------ short names


def test_short_names_drop_the_start_most_runs_share_and_stay_unique():
    runs = ["gemma-270m-sft-vs-base", "gemma-270m-dpo-vs-sft", "gemma-270m-grpo-vs-sft", "smollm2-135m-chat-vs-plain"]
    assert names.short_names([(n, None) for n in runs]) == ["sft-vs-base", "dpo-vs-sft", "grpo-vs-sft", runs[3]]
    assert names.short_names([("gemma-270m-sft", "SFT"), ("gemma-270m-dpo", None)]) == ["SFT", "gemma-270m-dpo"]
    assert names.short_names([("a-x", None), ("a-x", None)]) == ["a-x (1)", "a-x (2)"]
    cut = names.short_names([("a-very-long-run-name-that-goes-on-and-on-and-on", None)])[0]
    assert len(cut) == names.MAX_WIDTH and cut.startswith("a-very") and cut.endswith("on-and-on") and "…" in cut
    assert names.short_names([("x-1", None), ("x-1-b", None)]) == ["1", "1-b"]


def test_a_run_s_short_name_attribute_names_it_in_the_charts(tmp_path, monkeypatch):
    meta = RunMeta(name="alpha", top_k=TOP_K, side_attrs=PLAIN_SIDES, attrs={"short_name": "A!"})
    write_artifact(tmp_path / "alpha.h5", meta, ALPHA, TOKENS)
    write_run(tmp_path / "beta.h5", BETA)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"] == ["A!", "beta"]


# ------------------------------------------------------------------------------------------------ sides


def test_labels_and_info_say_what_differs_between_the_sides(tmp_path):
    chat = {"model": "m", "template": "chat"}
    assert (
        pair({"aligned": {**chat, "system": "Be brief."}, "base": chat}) == "m: system ‘Be brief.’ vs no system prompt"
    )
    both = {"aligned": {**chat, "adapter": "sft", "system": "x"}, "base": chat}
    assert pair(both) == "m: +sft (system ‘x’) vs no adapter (no system prompt)"
    assert side_differences({"aligned": {**chat, "system": "x"}, "base": chat}) == "system prompt"
    assert side_differences({"aligned": chat, "base": chat}) == "nothing"
    sides = {**PLAIN_SIDES, "aligned": {**PLAIN_SIDES["aligned"], "system": "Be brief."}}
    text = describe(write_run(tmp_path / "s.h5", ALPHA, sides=sides))
    assert "system 'Be brief.'" in text and "the sides differ in: model, template, system prompt" in text


# ------------------------------------------------------------------------------------------------ axes, numbers


def test_a_share_axis_never_runs_below_zero():
    assert charts.share_axis([0.0, 0.0, None]) == {"range": [0, 1]}
    assert charts.share_axis([0.0, 0.2]) == {"rangemode": "tozero"}
    frame = pl.DataFrame({"x": ["a", "b"], "share": [0.0, 0.0], "run": ["r", "r"]})
    fig = charts.bars(frame, "x", "share", "run", "t", "share", percent=True)
    assert list(fig.layout.yaxis.range) == [0, 1]


def test_position_ticks_are_the_positions_themselves():
    frame = pl.DataFrame({"t_start": [0, 1, 2, 40], "share": [0.1, 0.2, 0.3, 0.4], "run": ["r"] * 4})
    fig = charts.position_lines(frame, "t_start", "share", "run", "t", "share", percent=True)
    assert list(fig.layout.xaxis.ticktext) == ["0", "1", "2", "5", "10", "20"]
    assert list(fig.layout.xaxis.tickvals) == [1, 2, 3, 6, 11, 21]
    assert list(fig.data[0].x) == [1, 2, 3, 41] and fig.layout.xaxis.type == "log"
    assert fig.layout.xaxis.title.text == "position t in the answer (log scale)"


def test_compare_opens_on_runs_whose_sides_differ():
    sides = ["p", "p", "q"]
    assert stats.default_pair(sides, [(0, 1, 10), (1, 2, 5)]) == (1, 2)
    assert stats.default_pair(sides, [(0, 1, 10)]) == (0, 2)  # the only sharing pair agrees by construction
    assert stats.default_pair(["p", "p"], [(0, 1, 3)]) == (0, 1)


def test_the_story_says_when_shifts_do_not_crowd_the_start():
    runs = pl.DataFrame(
        {"name": ["a", "b"], "share_unshifted": [0.9, 0.8], "share_shifted": [0.05, 0.1], "early": [0.01, 0.2]}
    ).with_columns(later=pl.Series([0.1, 0.05]))
    assert "do not crowd the start" not in story.sentences(runs.head(0))
    text = story.sentences(runs.with_columns(later=pl.Series([0.1, 0.3])))
    assert "The shifts do not crowd the start of the answer" in text and "in only 0 of 2 runs" in text
    bins = pl.DataFrame({"t_start": [0, 5, 10, 20], "positions": [10, 10, 5, 0], "share_shifted": [0.5, 0.1, 0.2, 0]})
    assert story.early_and_later(bins) == (pytest.approx(0.3), pytest.approx(0.2))


# ------------------------------------------------------------------------------------------------ examples


def test_tokens_wrap_at_the_line_width_and_after_a_newline():
    starts, widths, rows = charts.token_layout(["ab", "\n", "cd", "efg", ""], width=4)
    assert (starts, widths, rows) == ([0, 2, 0, 0, 3], [2, 1, 2, 3, 1], [0, 0, 1, 2, 2])


def test_a_click_on_the_token_map_is_a_position():
    assert charts.clicked_token({"selection": {"points": [{"point_index": 3, "curve_number": 0}]}}) == 3
    assert charts.clicked_token({"selection": {"points": [{"point_index": 0, "curve_number": 1}]}}) is None  # legend
    assert charts.clicked_token({"selection": {"points": []}}) is None
    assert charts.clicked_token(None) is None


def test_a_top_k_bar_is_never_blank():
    assert [tokens.bar_label(t, 7) for t in (" ", "  ", "", "\n", " the")] == ["␣", "␣␣", "⟨7⟩", "↵", " the"]


def test_stages_says_when_the_picked_runs_agree_by_construction_and_picks_a_chain(tmp_path, monkeypatch):
    small_runs(tmp_path)  # alpha and beta: one pair of sides, one answer in common
    chain = chain_runs(tmp_path)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.sidebar.multiselect[0].set_value([ALPHA_LABEL, BETA_LABEL]).run()
    at.switch_page("app_pages/stages.py").run()
    assert at.info[0].value.startswith("The picked runs that share answers are of one pair of sides")
    at.button(key="stages-pick-chain").click().run()
    assert all(value.split(" · ")[0] in chain for value in at.sidebar.multiselect[0].value)
    assert len(at.sidebar.multiselect[0].value) == len(chain) and not at.info
