"""The shipped decoding experiments (gemma-270m-arith-*): provenance checked, numbers as docs/experiments.md gives."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

from compute.core import comparisons, intervals
from compute.core.artifact.reader import open_artifact
from compute.core.artifact.summary import summarize
from compute.core.provenance import check_provenance

ARTIFACTS = ROOT / "artifacts"
RUNS = sorted(path.stem for path in ARTIFACTS.glob("gemma-270m-arith-*.h5") if not path.name.endswith(".aggregates.h5"))


def test_the_experiments_are_shipped():
    assert {"gemma-270m-arith-aligned", "gemma-270m-arith-base", "gemma-270m-arith-nudging"} <= set(RUNS)
    assert any("cross-aligned" in name for name in RUNS) and any("cross-base" in name for name in RUNS)
    assert any("alpha" in name for name in RUNS) and any("prefill" in name for name in RUNS)  # the sweeps


@pytest.mark.parametrize("name", RUNS)
def test_each_run_follows_its_rule_and_is_judged(name):
    artifact = open_artifact(ARTIFACTS / f"{name}.h5")
    assert artifact.attrs["task"] == "arithmetic" and artifact.n_examples == 100
    assert check_provenance(artifact) == []  # the sweeps' decoder log-probabilities too
    assert (ROOT / "compute" / "recipes" / f"{name}.toml").is_file()


@pytest.mark.parametrize("name", RUNS)
def test_doc_sync_experiments_page_gives_each_runs_accuracy_and_share(name):
    """Doc sync: docs/experiments.md has a row per run: its accuracy and, for mixed rules, the share of the other
    side."""
    text = (ROOT / "docs" / "experiments.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| `{name}`"))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    artifact = open_artifact(ARTIFACTS / f"{name}.h5")
    accuracy = summarize(artifact)["accuracy"]
    assert re.match(rf"{accuracy:.0%} \(", cells[2]), (cells[2], accuracy)
    share = artifact.attrs.get("decoding_share")
    assert cells[3] == (f"{share:.1%}" if share is not None else "-")


def _accuracy_interval(artifact) -> intervals.Estimate:
    correct = artifact.read("examples/correct")
    judged = (correct >= 0).astype(float)
    return intervals.ratio((correct == 1).astype(float), judged, intervals.resample_weights(len(correct)))


@pytest.mark.parametrize("name", RUNS)
def test_doc_sync_experiments_page_gives_each_runs_accuracy_interval(name):
    """Doc sync: the accuracy cell ends with its 95 % interval in points: a bootstrap over the 100 problems."""
    text = (ROOT / "docs" / "experiments.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| `{name}`"))
    cell = [cell.strip() for cell in row.split("|")[1:-1]][2]
    e = _accuracy_interval(open_artifact(ARTIFACTS / f"{name}.h5"))
    assert cell.endswith(f"[{100 * e.low:.0f}, {100 * e.high:.0f}]"), (cell, e)


SIDES = {"GRPO alone": "aligned", "SFT alone": "base", "nudging": "nudging"}


def _run_of(words: str) -> str:
    found = re.fullmatch(r"insert (GRPO|SFT) (\d+) %", words)
    if found:
        return f"cross-{'aligned' if found[1] == 'GRPO' else 'base'}-{int(found[2]):02d}"
    return SIDES[words]


def test_doc_sync_experiments_page_paired_differences_are_what_the_runs_give():
    """Doc sync: each row of docs/experiments.md's "Which differences are shown" (the paired difference, its
    interval, the discordant problems, the exact McNemar p and whether the interval excludes 0) is what the two
    artifacts give."""
    text = (ROOT / "docs" / "experiments.md").read_text()
    rows = [line for line in text.splitlines() if re.match(r"\| (insert|GRPO alone|nudging) .* − ", line)]
    assert len(rows) >= 10
    for row in rows:
        comparison, difference, discordant, p, shown = (cell.strip() for cell in row.split("|")[1:-1])
        first, second = (
            open_artifact(ARTIFACTS / f"gemma-270m-arith-{_run_of(w)}.h5") for w in comparison.split(" − ")
        )
        pair = comparisons.judged_pair(
            first.read("examples/id").tolist(),
            first.read("examples/correct"),
            second.read("examples/id").tolist(),
            second.read("examples/correct"),
        )
        e = pair.difference
        assert difference == f"{100 * e.value:+.1f} [{100 * e.low:+.1f}, {100 * e.high:+.1f}]", row
        assert discordant == f"{pair.only_a} / {pair.only_b}", row
        assert float(p) == pytest.approx(pair.p_value, rel=0.05), row
        assert shown.startswith("yes") == (e.low > 0 or e.high < 0), row
