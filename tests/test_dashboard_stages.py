"""Runs over the same answers: the Stages page (which pairs shift each position) and its pure parts, on the
hand-made chain of dashboard_helpers.CHAIN whose every pattern is worked out there."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import corrupt_dataset
from dashboard_helpers import (
    ALPHA,
    APP,
    OTHER,
    chain_runs,
    small_runs,
    write_run,
)
from streamlit.testing.v1 import AppTest

from compute.cli import main as cli
from dashboard import stages, stats

SFT, DPO, SPAN = "sft-vs-base", "dpo-vs-sft", "dpo-vs-base"  # the chain's runs, without their shared "chain-"
# CHAIN's patterns under the answer-token definition (shifted: base rank 3+), and with marginal positions too.
SHIFTED = {
    "none": 4,
    f"only {SFT}": 0,
    f"only {DPO}": 1,
    f"only {SPAN}": 1,
    f"{SFT} + {DPO}": 0,
    f"{SFT} + {SPAN}": 2,
    f"{DPO} + {SPAN}": 1,
    f"{SFT} + {DPO} + {SPAN}": 1,
}
OR_MARGINAL = {**SHIFTED, "none": 3, f"only {DPO}": 1, f"{SFT} + {DPO}": 1}


@pytest.fixture
def chain_dir(tmp_path, monkeypatch):
    """The chain's three runs with alpha and beta (which share one answer)."""
    directory = tmp_path / "runs"
    chain_runs(directory)
    small_runs(directory)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    return directory


def stages_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("app_pages/stages.py").run()
    drew(at)
    return at


def drew(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def frame(at: AppTest, column: str):
    """The first dataframe on the page with this column, as pandas."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def expander_table(at: AppTest, name: str):
    return next(e for e in at.expander if e.label == f"Table: {name}").dataframe[0].value


def pattern_counts(at: AppTest) -> dict[str, int]:
    table = frame(at, "shifted_by")
    return dict(zip(table["shifted_by"], table["positions"], strict=True))


# ------------------------------------------------------------------------------------------------ pure parts


def test_answer_groups_are_the_sets_of_runs_holding_answers_together():
    a, b, c, d = frozenset("xyz"), frozenset("xyzw"), frozenset("xy"), frozenset("q")
    groups = stats.answer_groups([a, b, c, d])
    assert groups == [((0, 1, 2), 2), ((0, 1), 3)]  # x, y held by all three; z by a and b; w and q by one run
    assert stats.answer_groups([a, d]) == []


def test_the_chain_orders_adjacent_steps_then_spans_and_names_each_stage():
    base, sft, dpo = {"model": "m"}, {"model": "m", "adapter": "a/sft"}, {"model": "m", "adapter": "a/dpo/"}
    sides = [{"aligned": dpo, "base": base}, {"aligned": dpo, "base": sft}, {"aligned": sft, "base": base}]
    found = stages.chain(sides, ["a", "b", "c"])
    assert found.order == [2, 1, 0] and found.stages == [["m"], ["sft"], ["dpo"]]
    grpo = {"model": "m", "adapter": "a/grpo"}
    tree = stages.chain([{"aligned": grpo, "base": sft}, *sides[1:]], ["a", "b", "c"])
    assert tree.order == [2, 0, 1] and tree.stages == [["m"], ["sft"], ["dpo", "grpo"]]
    both_ways = stages.chain([{"aligned": sft, "base": base}, {"aligned": base, "base": sft}], ["y", "x"])
    assert both_ways == stages.Chain([1, 0], [])  # no chain: by name
    templates = [{"aligned": {"model": "m", "template": "chat"}, "base": {"model": "m", "template": "plain"}}] * 2
    assert stages.chain(templates, ["b", "a"]).order == [1, 0]  # the same step twice: by name


def test_short_names_drop_the_shared_start_at_a_separator():
    assert stages.short_names(["g-chain-sft-vs-base", "g-chain-dpo-vs-sft"]) == ["sft-vs-base", "dpo-vs-sft"]
    assert stages.short_names(["run-1", "run-10"]) == ["1", "10"]
    assert stages.short_names(["abc", "abd"]) == ["abc", "abd"]  # no separator in the shared start
    assert stages.short_names(["x-a", "x-a"]) == ["x-a", "x-a"]


def test_counts_by_pattern_bin_and_type_over_blocks():
    """Two runs, two blocks: each position's pattern, bin and type, and the first position of each pattern."""
    tokens = pl.DataFrame({"id": [1, 2, 3], "text": [" However", ",", " cat"]}, schema_overrides={"id": pl.Int32})
    first = stages.Block(
        [np.array([2, 0, 1, 2], np.int8), np.array([2, 2, 0, 0], np.int8)], np.array([1, 2, 3, 9]), np.array([3, 1]), 0
    )
    second = stages.Block([np.array([0, 2], np.int8), np.array([1, 2], np.int8)], np.array([3, 3]), np.array([2]), 2)
    counted = stages.count([first, second], runs=2, least=2, longest=3, token_table=tokens, samples=1)
    names = ["A", "B"]
    table = stages.patterns(counted, names)
    assert dict(zip(table["shifted_by"], table["positions"], strict=True)) == {
        "none": 2,
        "only A": 1,
        "only B": 1,
        "A + B": 2,
    }
    assert stages.run_shares(counted, names)["shifted"].to_list() == [3, 3]
    binned = stages.by_position(counted, names).filter(pl.col("positions") > 0)
    assert sorted(binned.select("t_start", "shifted_by", "positions").rows()) == [
        (0, "A + B", 1),
        (0, "none", 1),
        (0, "only A", 1),
        (1, "A + B", 1),
        (1, "only B", 1),
        (2, "none", 1),
    ]
    typed = stages.by_type(counted, names).filter(pl.col("positions") > 0)
    assert sorted(typed.select("type", "shifted_by", "positions").rows()) == [
        ("discourse / transition", "A + B", 1),  # " However"
        ("other word", "A + B", 1),
        ("other word", "none", 2),
        ("punctuation", "only B", 1),
        ("unknown", "only A", 1),  # id 9 is not in the token table
    ]
    samples = counted.samples.rows()
    assert samples == [(0, 0, 2, 3), (1, 1, 0, 9), (2, 0, 1, 2), (3, 0, 0, 1)]  # pattern, answer, t, token
    marginal = stages.count([first, second], runs=2, least=1, longest=3, token_table=tokens)
    assert stages.patterns(marginal, names)["positions"].to_list() == [0, 2, 2, 2]  # none, A, B, A + B


def test_type_indices_know_only_the_token_table_ids():
    table = pl.DataFrame({"id": [3, 1, 2**30], "text": [" However", "!", " Sure"]}, schema_overrides={"id": pl.Int32})
    lookup = stages.type_lookup(table)
    found = [stages.TYPES[i] for i in stages.type_indices(np.array([1, -1, 3, 2, 2**30, 2**31 - 1]), lookup)]
    assert found == ["punctuation", "unknown", "discourse / transition", "unknown", "unknown", "unknown"]
    empty = stages.type_lookup(pl.DataFrame(schema={"id": pl.Int32, "text": pl.String}))
    assert stages.type_indices(np.array([5, 7]), empty).tolist() == [len(stages.TYPES) - 1] * 2


# --------------------------------------------------------------------------------------------------- the page


def test_stages_page_opens_on_the_chain_in_chain_order(chain_dir):
    at = stages_page()
    group = at.selectbox(key="stages-group")
    assert group.options[group.index].startswith("3 runs · 3 answers in common")
    assert any("base → tiny-sft → tiny-dpo" in c.value.replace("\\", "") for c in at.caption)
    pairs = frame(at, "aligned side")
    assert pairs["pair"].tolist() == [SFT, DPO, SPAN]  # the chain's order, not the names'
    assert pairs["shifted"].tolist() == [3, 3, 5]
    assert {m.label: m.value for m in at.metric} == {"pairs": "3", "answers all of them hold": "3", "positions": "10"}
    assert any(f"{SPAN} 4." in c.value.replace("\\", "") for c in at.caption)  # c-3 is only in dpo-vs-base
    assert pattern_counts(at) == SHIFTED
    binned = expander_table(at, "stages-positions")
    first = binned[binned["t_start"] == 0].set_index("shifted_by")["positions"].to_dict()
    assert first[f"{SFT} + {SPAN}"] == 2 and first["none"] == 1
    typed = expander_table(at, "stages-types").set_index(["type", "shifted_by"])["positions"].to_dict()
    assert typed[("discourse / transition", f"{SFT} + {SPAN}")] == 1  # " However", c-1 t0
    assert typed[("number", f"{SFT} + {DPO} + {SPAN}")] == 1  # " 42", c-0 t4
    assert not at.warning


def test_marginal_positions_count_as_shifted_when_asked(chain_dir):
    at = stages_page()
    at.checkbox(key="stages-marginal").check().run()
    drew(at)
    assert pattern_counts(at) == OR_MARGINAL


def test_the_aligntds_definition_changes_every_pattern(chain_dir):
    """The aligned side's top choice is the answer token, third in the base top-k where the base rank is not 0:
    marginal under AlignTDS's rule, so no pair shifts any position."""
    at = stages_page()
    at.sidebar.radio(key="category-definition").set_value("aligned_top_choice").run()
    drew(at)
    assert pattern_counts(at) == {name: 10 if name == "none" else 0 for name in SHIFTED}


def test_order_by_name_and_a_subset_of_pairs(chain_dir):
    at = stages_page()
    at.radio(key="stages-order").set_value("run name").run()
    assert frame(at, "aligned side")["pair"].tolist() == [SPAN, DPO, SFT]
    runs = next(m for m in at.multiselect if m.key.startswith("stages-runs-"))
    assert runs.options == [f"chain-{SPAN}", f"chain-{DPO}", f"chain-{SFT}"]
    runs.set_value([f"chain-{SFT}", f"chain-{DPO}"]).run()  # kept in the order listed, whatever the clicks
    drew(at)
    assert frame(at, "aligned side")["pair"].tolist() == [DPO, SFT]
    counts = pattern_counts(at)
    assert counts == {"none": 5, f"only {DPO}": 2, f"only {SFT}": 2, f"{DPO} + {SFT}": 1}


def test_a_position_opens_in_the_examples_page(chain_dir):
    """c-2 t2 (shifted only by dpo-vs-base) opened in dpo-vs-sft, which lists c-2 first and shifts none of it: the
    Examples page shows that run's row 0 at t 2, not its default (the first shifted position, else 0)."""
    at = stages_page()
    pattern = at.selectbox(key=next(s.key for s in at.selectbox if s.key.startswith("stages-pattern-")))
    assert pattern.options[pattern.index] == f"only {DPO}"  # the first pattern some pair shifts
    pattern.set_value(4).run()  # bit 2: only the third pair, dpo-vs-base
    positions = frame(at, "token")
    assert positions[["id", "t", "token"]].values.tolist() == [["c-2", 2, "$x$"]]
    at.selectbox(key="stages-open-run").set_value(1).run()  # dpo-vs-sft
    at.button(key="stages-open").click().run()
    drew(at)
    assert at.header[0].value == "Examples"
    assert at.selectbox(key="ex-run").value == "chain-dpo-vs-sft · base: +tiny-dpo vs +tiny-sft"
    assert at.selectbox(key="ex-pick-chain-dpo-vs-sft.h5").value == 0
    assert at.number_input(key="ex-t-chain-dpo-vs-sft.h5-0").value == 2
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["rank under base"], metrics["rank under aligned"]) == ("0", "0")


def test_no_runs_sharing_answers_say_so_in_one_line(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    directory.mkdir()
    write_run(directory / "alpha.h5", ALPHA)
    write_run(directory / "other.h5", OTHER)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = stages_page()
    assert [i.value for i in at.info] == [
        "No two of the picked runs share an answer (same example id and answer token ids), so there are no stages "
        "to follow: pick runs scored over the same answers, such as a stage chain."
    ]
    assert not at.get("plotly_chart")


def test_one_picked_run_asks_for_two(chain_dir):
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.sidebar.multiselect[0].set_value([at.sidebar.multiselect[0].options[0]]).run()
    at.switch_page("app_pages/stages.py").run()
    drew(at)
    assert [i.value for i in at.info] == ["Pick at least 2 runs in the sidebar."]


def test_a_run_damaged_after_its_answers_were_stored_is_named(chain_dir):
    """The answers come from the side file; reading the damaged ranks fails: one line naming the file."""
    paths = sorted(chain_dir.glob("chain-*.h5"))
    assert cli(["aggregate", *map(str, paths)]) == 0
    corrupt_dataset(chain_dir / "chain-dpo-vs-sft.h5", "sides/base/rank")
    at = stages_page()
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"{chain_dir / 'chain-dpo-vs-sft.h5'}: cannot read sides/base/rank"
    )
    assert not at.get("plotly_chart")


def test_compare_lists_the_groups_and_says_how_many_answers_a_and_b_share(chain_dir):
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("app_pages/compare.py").run()
    drew(at)
    groups = frame(at, "members")
    assert groups["runs"].tolist() == [3, 2] and groups["answers all hold"].tolist() == [3, 1]
    at.selectbox(key="cmp-a").set_value(next(o for o in at.selectbox(key="cmp-a").options if "chain-dpo-vs-base" in o))
    at.selectbox(key="cmp-b").set_value(next(o for o in at.selectbox(key="cmp-b").options if "chain-dpo-vs-sft" in o))
    at.run()
    drew(at)
    shared = "A and B share 3 answers: 3 of A's 4 and of B's 3 non-empty answers. Positions are compared on those."
    assert shared in [c.value for c in at.caption]
    assert {m.label: m.value for m in at.metric}["positions compared"] == "10"
