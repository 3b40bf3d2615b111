"""The template control end to end on a tiny pair: one run forwards each of its four cells once per batch and
writes five pair artifacts equal to the same pairs run one by one over the same answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import BASE_TEMPLATE, config_text, counting_forwards, write_config, write_jsonl

from compute.cli import main
from compute.core.artifact.reader import open_artifact
from compute.core.config import CONTROL_PAIRS, load_config
from compute.core.control import INTERACTION, LOGPROB, MEAN_KL, control_groups, decompose
from compute.engine.run import run_pairs

INSTRUCTIONS = [{"id": f"q{i}", "instruction": f"Tell me about item {i}."} for i in range(3)]
# role -> (model and template of the aligned side, of the base side) for the pair run one by one
SEPARATE = {
    "total": (("aligned", "chat"), ("base", BASE_TEMPLATE)),
    "weights-aligned-template": (("aligned", "chat"), ("base", "chat")),
    "weights-base-template": (("aligned", BASE_TEMPLATE), ("base", BASE_TEMPLATE)),
    "template-aligned-weights": (("aligned", "chat"), ("aligned", BASE_TEMPLATE)),
    "template-base-weights": (("base", "chat"), ("base", BASE_TEMPLATE)),
}


@pytest.fixture(scope="module")
def control(model_pairs, tmp_path_factory):
    """A control over the aligned side's own greedy answers (2 batches), and how many backbone passes it took."""
    folder = tmp_path_factory.mktemp("control")
    dataset = write_jsonl(folder / "questions.jsonl", INSTRUCTIONS)
    text = config_text(
        model_pairs["llama"], dataset, folder / "out", name="ctl", control="template", max_new_tokens=8, batch_size=2
    )
    with counting_forwards() as calls:
        paths = run_pairs(load_config(write_config(folder, text)))
    return folder, paths, calls


def test_each_cell_is_forwarded_once_per_batch(control):
    _, paths, calls = control
    assert sorted(paths) == sorted(f"ctl-{role}" for role in CONTROL_PAIRS)
    assert len(calls) == 4 * 2  # four cells, two batches (3 examples, batch_size 2)


def test_the_control_pairs_equal_the_pairs_run_one_by_one(model_pairs, control):
    folder, paths, _ = control
    pair = model_pairs["llama"]
    answers = paths["ctl-total"]  # the same token ids, as a dataset
    for role, ((aligned, aligned_template), (base, base_template)) in SEPARATE.items():
        body = (
            f'name = "one-{role}"\ndataset = "{answers}"\nout_dir = "{folder / "one"}"\nbatch_size = 2\n'
            f'[aligned]\nmodel = "{pair[aligned]}"\ntemplate = {json.dumps(aligned_template)}\n'
            f'[base]\nmodel = "{pair[base]}"\ntemplate = {json.dumps(base_template)}\n'
        )
        separate = open_artifact(
            next(iter(run_pairs(load_config(write_config(folder, body, f"{role}.toml"))).values()))
        )
        together = open_artifact(paths[f"ctl-{role}"])
        assert together.attrs["control_role"] == role
        assert together.side_attrs == separate.side_attrs
        for side in ("aligned", "base"):
            assert np.array_equal(
                together.read(f"sides/{side}/context_ids"), separate.read(f"sides/{side}/context_ids")
            )
        assert np.array_equal(together.read("positions/token_id"), separate.read("positions/token_id"))
        for dataset, _stat, _side in separate.statistics():
            a, b = together.read(dataset), separate.read(dataset)
            if a.dtype.kind == "f":
                assert np.allclose(a, b, atol=1e-5), (role, dataset)
            else:
                assert np.array_equal(a, b), (role, dataset)


def test_a_crossed_cell_rechecks_from_its_artifact(control):
    _, paths, _ = control
    assert main(["check", str(paths["ctl-weights-base-template"]), "--samples", "6"]) == 0


def test_the_tiny_controls_decomposition_adds_up(control):
    _, paths, _ = control
    groups = control_groups([open_artifact(p) for p in paths.values()])
    d = decompose(groups["ctl"])
    assert not d.weights_equal
    lp = d.measures[LOGPROB]
    parts = lp["weights-base-template"].value + lp["template-aligned-weights"].value
    assert np.isclose(lp["total"].value, parts, atol=1e-5)
    assert np.isclose(
        lp[INTERACTION].value, lp["template-aligned-weights"].value - lp["template-base-weights"].value, atol=1e-5
    )
    assert d.measures[MEAN_KL]["total"].value > 0


def test_a_control_on_one_model_forwards_two_cells_and_is_all_template(model_pairs, tmp_path):
    """Both sides on the same weights (a prompt pair, as SmolLM2 chat vs plain): the crossed cells equal the sides,
    so two cells run per batch, the weights' parts are exactly zero and the template's part is the whole shift."""
    same = {"aligned": model_pairs["llama"]["base"], "base": model_pairs["llama"]["base"]}
    dataset = write_jsonl(tmp_path / "questions.jsonl", INSTRUCTIONS[:2])
    text = config_text(same, dataset, tmp_path / "out", name="one", control="template", max_new_tokens=6)
    with counting_forwards() as calls:
        paths = run_pairs(load_config(write_config(tmp_path, text)))
    assert len(calls) == 2
    d = decompose(control_groups([open_artifact(p) for p in paths.values()])["one"])
    assert d.weights_equal
    for measure in d.measures.values():
        for part in ("weights-aligned-template", "weights-base-template"):
            assert measure[part].value == measure[part].low == measure[part].high == 0
        assert measure["template-aligned-weights"] == measure["total"]
    assert all(share.value == pytest.approx(1.0) for shares in d.template_share.values() for share in shares.values())
