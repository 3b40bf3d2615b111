"""The shipped template controls: complete, one of their pairs is the shipped SFT run, and the README quotes their
decomposition as `compute report` prints it from the artifacts."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT

from compute.core.artifact.reader import open_artifact
from compute.core.config import CONTROL_PAIRS
from compute.core.control import control_groups, decompose, format_decomposition
from compute.core.side_identity import same_weights

ARTIFACTS = ROOT / "artifacts"
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONTROLS = {"gemma-270m-sft-control": 24, "smollm2-135m-chat-control": 24}  # name: examples
PROMPT_PAIRS = (  # shipped runs whose two sides differ in template (context) only
    "gemma-270m-urial-vs-zeroshot",
    "gemma-270m-urial-generated",
    "gemma-270m-urial-branching",
    "smollm2-135m-chat-vs-plain",
)


def control(name: str):
    artifacts = [open_artifact(ARTIFACTS / f"{name}-{role}.h5") for role in CONTROL_PAIRS]
    return control_groups(artifacts)[name]


@pytest.mark.parametrize(("name", "examples"), CONTROLS.items())
def test_doc_sync_readme_quotes_the_shipped_decomposition(name, examples):
    """Doc sync: the README quotes each shipped control's decomposition as `tds report` prints it."""
    d = decompose(control(name))
    assert d.examples == examples
    printed = format_decomposition(d).split("\n\n")
    measures_table, shares = printed[1].splitlines()[2:], printed[3].splitlines()[:2]  # rows; the template's shares
    for line in measures_table + shares:
        assert line in README, line


def test_the_smollm2_control_is_all_template():
    d = decompose(control("smollm2-135m-chat-control"))
    assert d.weights_equal
    for parts in d.measures.values():
        for part in ("weights-aligned-template", "weights-base-template"):
            assert parts[part].value == parts[part].low == parts[part].high == 0
        assert parts["template-aligned-weights"] == parts["template-base-weights"] == parts["total"]


def test_the_gemma_controls_weights_pair_is_the_shipped_sft_run():
    """gemma-270m-sft-vs-base (SFT adapter vs base, both under the turn template) is the control's weights pair under
    the aligned template: the same contexts, answers and numbers on the examples the control scored."""
    shipped = open_artifact(ARTIFACTS / "gemma-270m-sft-vs-base.h5")
    pair = control("gemma-270m-sft-control")["weights-aligned-template"]
    assert pair.side_attrs["aligned"]["adapter"] == shipped.side_attrs["aligned"]["adapter"]
    for side in ("aligned", "base"):
        assert pair.side_attrs[side]["template"] == shipped.side_attrs[side]["template"]
    rows = slice(0, int(pair.read("examples/offsets")[-1]))
    assert list(pair.read("examples/id")) == list(shipped.read("examples/id")[: pair.n_examples])
    assert np.array_equal(pair.read("positions/token_id"), shipped.read("positions/token_id", rows))
    for dataset in ("sides/aligned/logprob", "sides/base/logprob", "positions/kl"):
        assert np.allclose(pair.read(dataset), shipped.read(dataset, rows), atol=2e-4), dataset
    assert np.mean(pair.read("sides/base/rank") == shipped.read("sides/base/rank", rows)) > 0.999


@pytest.mark.parametrize("name", PROMPT_PAIRS)
def test_the_prompt_pairs_differ_in_template_only(name):
    """The README says their whole shift is template: their sides have the same weights (and, doc sync, the README
    lists them under "Weights or template?")."""
    artifact = open_artifact(ARTIFACTS / f"{name}.h5")
    assert same_weights(artifact.side_attrs["aligned"], artifact.side_attrs["base"])
    assert artifact.side_attrs["aligned"]["template"] != artifact.side_attrs["base"]["template"]
    assert f"`{name}`" in README.split("## Weights or template?")[1].split("\n## ")[0]
