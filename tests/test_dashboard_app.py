"""Every dashboard page under Streamlit's AppTest, on hand-built artifacts whose numbers are checked by hand."""

from __future__ import annotations

import html
import math
import subprocess
import sys
import textwrap

import pytest
from dashboard_helpers import (
    ALPHA_LABEL,
    APP,
    BETA,
    BETA_LABEL,
    BOLD,
    CONTEXT_TEXT,
    MATH,
    ROOT,
    TOKENS,
    XSS,
    bad_files,
    open_page,
    strip_additions,
    write_run,
)
from streamlit.testing.v1 import AppTest

from dashboard.pages import SLUGS as PAGES


def table(at: AppTest, name: str):
    """The dataframe in the expander "Table: <name>" as pandas, rows by position."""
    expander = next(e for e in at.expander if e.label == f"Table: {name}")
    return expander.dataframe[0].value


def test_every_page_runs_and_writes_nothing(runs_dir):
    before = {p.name: p.stat().st_mtime_ns for p in runs_dir.iterdir()}
    for page in PAGES:
        at = open_page(page)
        assert at.header, page
        assert not at.warning, page
    assert {p.name: p.stat().st_mtime_ns for p in runs_dir.iterdir()} == before


def test_a_v1_file_without_the_optional_additions_opens_on_every_page(runs_dir):
    """No examples/index, no context text, no JS: every page draws it, and says what it lacks."""
    strip_additions(runs_dir / "alpha.h5", runs_dir / "plain.h5")
    (runs_dir / "alpha.h5").unlink()
    plain_label = ALPHA_LABEL  # the copy keeps alpha's name and pair
    for page in PAGES:
        at = open_page(page)
        assert not at.warning, (page, [w.value for w in at.warning])
    at = open_page("overview")
    plain = at.dataframe[0].value.set_index("run").loc[plain_label]
    assert plain["share_shifted"] == pytest.approx(3 / 9) and plain["mean_kl"] == pytest.approx(4.1 / 9, rel=1e-6)
    assert math.isnan(plain["mean_js"]) or plain["mean_js"] is None
    at = open_page("examples")
    at.selectbox(key="ex-run").set_value(plain_label).run()
    at.radio(key="ex-colour").set_value("JS").run()
    assert not at.exception
    assert any("does not store JS" in c.value for c in at.caption)


def test_overview_shares_kl_and_branching(runs_dir):
    at = open_page("overview")
    rows = at.dataframe[0].value.set_index("run")
    alpha, beta = rows.loc[ALPHA_LABEL], rows.loc[BETA_LABEL]
    assert (alpha["examples"], alpha["positions"]) == (2, 9)
    assert alpha["share_unshifted"] == pytest.approx(4 / 9)
    assert alpha["share_marginal"] == pytest.approx(2 / 9)
    assert alpha["share_shifted"] == pytest.approx(3 / 9)
    assert alpha["mean_kl"] == pytest.approx(4.1 / 9, rel=1e-6)
    assert alpha["mean_js"] == pytest.approx(4.1 / 36, rel=1e-6)
    assert alpha["exp_entropy_aligned"] == pytest.approx(math.e, rel=1e-6)
    assert alpha["exp_entropy_base"] == pytest.approx(math.e**2, rel=1e-6)
    assert alpha["exp_entropy_ratio"] == pytest.approx(math.e, rel=1e-6)
    assert alpha["answer_is_aligned_top"] == 1.0
    assert (alpha["aligned_model"], alpha["base_template"]) == ("tiny/aligned", "plain")
    assert (beta["share_unshifted"], beta["share_marginal"], beta["share_shifted"]) == pytest.approx(
        (6 / 8, 1 / 8, 1 / 8)
    )
    assert len(at.get("plotly_chart")) == 4  # the shares with 95 % whiskers too (tests/test_dashboard_intervals.py)


def test_the_aligntds_definition_ranks_the_aligned_top_choice_in_the_base_top_k(runs_dir):
    """In alpha the aligned top choice is the answer token; the base top-k has it first where its base rank
    is 0 and third otherwise, so AlignTDS's rule makes every other position marginal (none shifted)."""
    at = open_page("overview")
    at.sidebar.radio(key="category-definition").set_value("aligned_top_choice").run()
    alpha = at.dataframe[0].value.set_index("run").loc[ALPHA_LABEL]
    assert (alpha["share_unshifted"], alpha["share_marginal"], alpha["share_shifted"]) == pytest.approx(
        (4 / 9, 5 / 9, 0)
    )
    at.switch_page("app_pages/positions.py").run()
    shifted = table(at, "position-share_marginal")
    assert shifted[shifted["run"] == ALPHA_LABEL]["share_marginal"].tolist() == pytest.approx([0.5, 0, 1, 0.5, 1])


def test_a_replaced_file_is_read_afresh(runs_dir):
    at = open_page("overview")
    assert at.dataframe[0].value.set_index("run").loc[ALPHA_LABEL, "positions"] == 9
    write_run(runs_dir / "alpha.h5", BETA, overwrite=True)
    at.run()
    assert at.dataframe[0].value.set_index("run").loc[ALPHA_LABEL, "positions"] == 8


def test_sidebar_choice_is_shared_across_pages(runs_dir):
    at = open_page("overview")
    at.sidebar.multiselect[0].set_value([BETA_LABEL]).run()
    at.switch_page("app_pages/positions.py").run()
    assert set(table(at, "position-share_shifted")["run"]) == {BETA_LABEL}


def test_positions_per_position_ratio(runs_dir):
    at = open_page("positions")
    shifted = table(at, "position-share_shifted")
    alpha = shifted[shifted["run"] == ALPHA_LABEL].set_index("t_start")
    assert alpha["share_shifted"].to_dict() == pytest.approx({0: 0.5, 1: 0.0, 2: 0.0, 3: 0.5, 4: 1.0})
    assert alpha["answers_reaching"].to_dict() == {0: 2, 1: 2, 2: 2, 3: 2, 4: 1}
    assert alpha["positions"].to_dict() == {0: 2, 1: 2, 2: 2, 3: 2, 4: 1}
    marginal = table(at, "position-share_marginal")
    assert marginal[marginal["run"] == ALPHA_LABEL]["share_marginal"].tolist() == pytest.approx([0, 0, 1, 0, 0])


def test_token_types_counts_and_most_shifted(runs_dir):
    at = open_page("token_types")
    types = table(at, "token-types")
    alpha = types[types["run"] == ALPHA_LABEL].set_index("type")
    assert alpha["positions"].to_dict() == {
        "other word": 3,  # " here", "**bold**", "$x$"
        "politeness / safety": 1,
        "punctuation": 1,
        "whitespace / newline": 1,
        "number": 1,
        "code": 1,
        "discourse / transition": 1,
    }
    assert alpha.loc["other word", "share_marginal"] == pytest.approx(2 / 3)
    assert alpha.loc["politeness / safety", "share_shifted"] == 1.0

    at.slider(key="types-min-count").set_value(1).run()
    top = next(d.value for d in at.dataframe if "in_context" in d.value.columns)
    assert set(top["token_id"]) == {1, 5, 9}  # "Sure", " 42", " However": the shifted ones
    contexts = dict(zip(top["token_id"], top["in_context"], strict=True))
    assert contexts[1] == "⟦Sure⟧, here↵ 42"
    assert contexts[9] == f"{XSS}{BOLD}{MATH}⟦ However⟧"


def test_token_types_classify_each_id_of_the_token_table_once(runs_dir, monkeypatch):
    """Types come from the token table (13 ids per run here), not from every position, and are cached."""
    from compute.core import token_types as tokens

    calls = []
    classify = tokens.classify
    monkeypatch.setattr(tokens, "classify", lambda text: calls.append(text) or classify(text))
    at = open_page("token_types")
    assert len(calls) == 2 * 13 and sorted(set(calls)) == sorted(TOKENS.values())
    at.run()
    assert len(calls) == 2 * 13


def test_token_types_nudging_entropy(runs_dir):
    at = open_page("token_types")
    nudging = table(at, "nudging")
    alpha = nudging[nudging["run"] == ALPHA_LABEL].set_index("category")
    assert alpha["positions"].to_dict() == {"unshifted": 4, "marginal": 2, "shifted": 3}
    assert alpha["entropy_base"].tolist() == pytest.approx([2.0, 2.0, 2.0])


def test_examples_page_shows_tokens_literally(runs_dir):
    at = open_page("examples")
    at.text_input(key="ex-search").input("literal").run()
    box = at.selectbox(key="ex-pick-alpha.h5")
    assert [option.split(" ")[0] for option in box.options] == ["ex-b"]
    answer = next(h.value for h in at.get("html") if "onerror" in h.value)
    assert "<img" not in answer
    assert html.escape(XSS, quote=True) in answer
    assert BOLD in answer and MATH in answer
    at.radio(key="ex-colour").set_value("JS").run()
    assert not at.exception
    assert "JS 0.5 nats" in at.html[0].value  # the colour scale's top: the example's largest JS, 2.0 / 4
    at.number_input(key="ex-t-alpha.h5-1").set_value(3).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["rank under base"] == "10"
    assert metrics["KL / JS (nats)"] == "2.000 / 0.500"
    topk = table(at, "top-k")
    assert topk[topk["side"] == "base"]["token_id"].tolist() == [100, 101, 9]
    assert topk["prob"].tolist()[:3] == pytest.approx([0.5, 0.3, 0.1])


def test_examples_page_contexts(runs_dir):
    at = open_page("examples")
    codes = [c.value for c in at.code]
    assert "Say hi *now*" in codes  # the prompt, as a literal code block
    assert CONTEXT_TEXT in codes  # the aligned side stored its context text
    assert "⟨0⟩⟨50⟩⟨51⟩" in codes  # the base side did not: ids without text in the token table


def test_examples_page_sorts_by_kl(runs_dir):
    at = open_page("examples")
    at.selectbox(key="ex-sort").set_value("mean KL").run()
    box = at.selectbox(key="ex-pick-alpha.h5")
    assert [option.split(" ")[0] for option in box.options] == ["ex-b", "ex-a"]  # 2.3/4 > 1.8/5


def test_compare_page(runs_dir):
    at = open_page("compare")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["examples matched by id"] == "2"
    assert metrics["same answer (token ids)"] == "1"
    assert metrics["positions compared"] == "5"
    assert metrics["same category"] == "60.0%"
    shares = table(at, "compare-shares").set_index("run")
    assert shares.loc[ALPHA_LABEL, "share_shifted"] == pytest.approx(3 / 9)
    assert shares.loc[BETA_LABEL, "share_shifted"] == pytest.approx(1 / 7)  # ex-a and ex-b only
    assert shares.loc["change (B − A)", "share_shifted"] == pytest.approx(1 / 7 - 3 / 9)
    crosstab = table(at, "compare-categories").set_index(["category_a", "category_b"])["positions"].to_dict()
    assert crosstab == {("unshifted", "unshifted"): 2, ("marginal", "marginal"): 1, ("shifted", "unshifted"): 2}


def test_bad_files_get_a_notice_and_the_rest_works(runs_dir):
    broken = bad_files(runs_dir, runs_dir / "alpha.h5")
    for page in PAGES:
        at = open_page(page)
        notices = sorted(w.value.replace("\\", "") for w in at.warning)
        assert len(notices) == 3, notices
        assert "incomplete.h5: incomplete artifact (no 'complete' attribute" in notices[0]
        assert "newer.h5: format_version 2 is newer than this reader" in notices[1]
        assert "truncated.h5: not a readable HDF5 artifact (truncated or corrupt?)" in notices[2]
        assert all(n.startswith("Skipped ") and str(runs_dir) not in n and "\n" not in n for n in notices)
    at = open_page("compare")
    assert at.header[0].value == "Compare two runs" and at.metric  # the good runs still compare
    assert sorted(p.name for p in broken.values()) == ["incomplete.h5", "newer.h5", "truncated.h5"]


@pytest.mark.parametrize("exists", [True, False])
def test_empty_directory_says_how_to_make_a_run(tmp_path, monkeypatch, exists):
    directory = tmp_path / "none"
    if exists:
        directory.mkdir()
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    message = at.info[0].value
    assert "tds run compute/recipes/<recipe>.toml" in message
    assert "out_dir" in message
    state = "holds no complete artifacts" if exists else "does not exist"
    assert f"{directory} (from TDS_ARTIFACTS_DIR) {state}" in message.replace("\\", "")


def test_default_directory_is_artifacts_at_the_repo_root(monkeypatch, tmp_path):
    monkeypatch.delenv("TDS_ARTIFACTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    from dashboard import load

    assert load.artifacts_dir() == ROOT / "artifacts"


def test_no_torch_or_transformers_imported(runs_dir):
    """Run every page in a fresh interpreter and check that no model library was imported."""
    script = textwrap.dedent(
        f"""
        import sys
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(APP)!r}, default_timeout=60).run()
        for page in {PAGES[1:]!r}:
            at.switch_page(f"app_pages/{{page}}.py").run()
            assert not at.exception, page
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "accelerate"))
        print("HEAVY", heavy)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HEAVY []" in done.stdout
