"""A stage chain: one run's answers, as its artifact, scored by other pairs with the very same token ids."""

from __future__ import annotations

import h5py
import numpy as np
from conftest import config_text, write_config, write_jsonl
from transformers import AutoTokenizer

from compute.cli import main
from compute.core.artifact.reader import open_artifact
from compute.core.config import load_config
from compute.engine.run import run

INSTRUCTIONS = [{"id": f"q{i}", "instruction": f"Say something about item {i}."} for i in range(3)]


def generated_run(pair, tmp_path):
    """The first stage of a chain: the aligned side's own greedy answers."""
    dataset = write_jsonl(tmp_path / "questions.jsonl", INSTRUCTIONS)
    config = write_config(tmp_path, config_text(pair, dataset, tmp_path / "out", name="final", max_new_tokens=12))
    return run(load_config(config))


def test_an_artifact_as_dataset_keeps_its_answer_ids_for_another_pair(model_pairs, tmp_path, capsys):
    llama = model_pairs["llama"]
    first = generated_run(llama, tmp_path)
    swapped = {"aligned": llama["base"], "base": llama["aligned"]}  # another pair over the same answers
    config = write_config(tmp_path, config_text(swapped, first, tmp_path / "out", name="chained"), "chained.toml")
    second = run(load_config(config))

    a, b = open_artifact(first), open_artifact(second)
    assert b.read("examples/id").tolist() == a.read("examples/id").tolist()
    assert b.read("examples/response").tolist() == a.read("examples/response").tolist()
    assert np.array_equal(b.read("examples/offsets"), a.read("examples/offsets"))
    assert np.array_equal(b.read("positions/token_id"), a.read("positions/token_id"))
    assert not np.allclose(b.read("sides/aligned/logprob"), a.read("sides/aligned/logprob"))  # another pair scored
    assert main(["check", str(second), "--samples", "6"]) == 0


def test_random_answer_ids_that_text_would_not_give_back_are_kept(model_pairs, tmp_path):
    """A tiny random model's greedy tokens rarely re-tokenise to themselves: only reusing the ids keeps them."""
    llama = model_pairs["llama"]
    first = generated_run(llama, tmp_path)
    ids = open_artifact(first).read("positions/token_id")
    tokenizer = AutoTokenizer.from_pretrained(llama["aligned"])
    artifact = open_artifact(first)
    offsets, responses = artifact.read("examples/offsets"), artifact.read("examples/response")
    retokenized = [tokenizer(r, add_special_tokens=False).input_ids for r in responses]
    stored = [ids[offsets[e] : offsets[e + 1]].tolist() for e in range(len(responses))]
    assert retokenized != stored, "the test needs answers whose text does not give back their ids"

    config = write_config(tmp_path, config_text(llama, first, tmp_path / "out", name="again"), "again.toml")
    assert np.array_equal(open_artifact(run(load_config(config))).read("positions/token_id"), ids)


def test_a_broken_artifact_as_dataset_is_one_line(model_pairs, tmp_path, capsys):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not hdf5 at all")
    config = write_config(tmp_path, config_text(model_pairs["llama"], broken, tmp_path / "out"))
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.h5" in err and "dataset" in err


def test_answer_ids_outside_the_pairs_vocabulary_are_one_line(model_pairs, tmp_path, capsys):
    """An artifact made with another tokenizer: its answer ids cannot be scored by this pair."""
    first = generated_run(model_pairs["llama"], tmp_path)
    with h5py.File(first, "r+") as f:
        ids = f["positions/token_id"][()]
        ids[0] = 10_000  # the tiny tokenizer has a few hundred tokens
        f["positions/token_id"][...] = ids
    config = write_config(tmp_path, config_text(model_pairs["llama"], first, tmp_path / "out", name="x"), "x.toml")
    capsys.readouterr()
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "10000" in err and "outside the vocabulary" in err
    assert not (tmp_path / "out" / "x.h5").exists()
