"""The shipped decoding experiments (gemma-270m-arith-*): provenance checked, numbers as docs/experiments.md gives."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

from compute.core.artifact import open_artifact, summarize
from compute.core.provenance import check_provenance

ARTIFACTS = ROOT / "artifacts"
RUNS = sorted(path.stem for path in ARTIFACTS.glob("gemma-270m-arith-*.h5"))


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
def test_docs_give_each_runs_accuracy_and_share(name):
    """docs/experiments.md has a row per run: its accuracy and, for mixed rules, the share of the other side."""
    text = (ROOT / "docs" / "experiments.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| `{name}`"))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    artifact = open_artifact(ARTIFACTS / f"{name}.h5")
    accuracy = summarize(artifact)["accuracy"]
    assert re.match(rf"{accuracy:.0%} \(", cells[2]), (cells[2], accuracy)
    share = artifact.attrs.get("decoding_share")
    assert cells[3] == (f"{share:.1%}" if share is not None else "-")
