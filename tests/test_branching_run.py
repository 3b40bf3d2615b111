"""A run with [branching] end to end (tiny models): stored, seeded, kept across resume, checked on read."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from conftest import config_text, write_config, write_jsonl
from transformers import AutoModelForCausalLM

from compute.core import describe as describe_module
from compute.core.artifact.branching_samples import branching_attrs, has_branching, read_branching
from compute.core.artifact.errors import ArtifactError
from compute.core.artifact.examples import read_examples
from compute.core.artifact.reader import open_artifact
from compute.core.config import load_config
from compute.core.describe import describe
from compute.core.statistics import SIDE_NAMES
from compute.engine import runner as runner_module
from compute.engine.run import run
from compute.engine.sampling import sample_example
from compute.engine.sides import load_sides
from compute.engine.verify import load_side_models, sample_steps, verify_branching

DATA = [
    {"id": "a", "instruction": "Thank me.", "response": "Thank you for your question!"},
    {"id": "b", "instruction": "Explain cats.", "response": "The cat sat on the mat."},
    {"id": "c", "instruction": "Here are some examples:"},
]
BRANCHING = "[branching]\nsamples = 4\nmax_new_tokens = 6\nseed = 1\n"


def write_run(folder, pair, batch_size: int):
    dataset = write_jsonl(folder / "data.jsonl", DATA)
    text = config_text(pair, dataset, folder / "out", batch_size=batch_size, max_new_tokens=5) + BRANCHING
    return load_config(write_config(folder, text))


@pytest.fixture(scope="module")
def runs(model_pairs, tmp_path_factory):
    """The same run twice: in one batch of 3, and one example per batch, killed after the first and resumed."""
    pair = model_pairs["llama"]
    whole = run(write_run(tmp_path_factory.mktemp("whole"), pair, batch_size=3))
    config = write_run(tmp_path_factory.mktemp("resumed"), pair, batch_size=1)
    real, calls = runner_module.score_batch, {"n": 0}

    def fail_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    patch = pytest.MonkeyPatch()
    patch.setattr(runner_module, "score_batch", fail_second)
    try:
        with pytest.raises(RuntimeError, match="killed"):
            run(config)
    finally:
        patch.undo()
    assert len(list(config.out_dir.glob(".run.partial/batch-*.h5"))) == 1
    return open_artifact(whole), open_artifact(run(config)), config


def test_the_artifact_holds_each_sides_samples_as_the_format_says(runs):
    artifact = runs[0]
    assert has_branching(artifact)
    for side in SIDE_NAMES:
        attrs = branching_attrs(artifact, side)
        assert (attrs["samples"], attrs["temperature"], attrs["top_p"], attrs["max_new_tokens"]) == (4, 1.0, 0.9, 6)
        offsets = artifact.read(f"branching/{side}/sample_offsets")
        assert len(offsets) == 3 * 4 + 1 and offsets[-1] == len(artifact.read(f"branching/{side}/entropy"))
        lengths = np.diff(offsets)
        assert lengths.min() >= 1 and lengths.max() <= 6
        assert artifact.read(f"branching/{side}/token_id").dtype == np.int32


def test_stored_samples_are_what_the_side_samples_for_that_example(runs, model_pairs):
    artifact, _, config = runs
    side = load_sides(config)["base"]
    e = 1
    direct = sample_example(side, artifact.context_ids("base", e).tolist(), config.branching, (), index=e)
    stored = read_branching(artifact, "base")[e]
    np.testing.assert_array_equal(stored.offsets, direct.offsets)
    np.testing.assert_array_equal(stored.token_id, direct.token_id)
    np.testing.assert_allclose(stored.logprob, direct.logprob, atol=1e-5)


def nucleus_of(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Log-probabilities of the BF paper's distribution, in float64 with plain torch: logits / temperature, the
    most likely tokens while the mass above each is below top_p, renormalised; -inf outside the nucleus."""
    logprobs = torch.log_softmax(logits.double() / temperature, dim=-1)
    ordered, order = logprobs.exp().sort(descending=True)
    above = ordered.cumsum(dim=-1) - ordered
    kept = torch.zeros_like(ordered, dtype=torch.bool).scatter(-1, order, above < top_p)
    return torch.log_softmax(logprobs.masked_fill(~kept, -math.inf), dim=-1)


def test_stored_entropies_are_those_of_each_steps_distribution(runs):
    """Every stored step's entropy (and the sampled token's log-prob) against one plain forward of the model over
    the context and that sample's tokens: the step's distribution truncated to the nucleus, recomputed here."""
    artifact, _, config = runs
    for side in SIDE_NAMES:
        attrs = branching_attrs(artifact, side)
        model = AutoModelForCausalLM.from_pretrained(getattr(config, side).model, dtype=torch.float32).eval()
        for e, samples in enumerate(read_branching(artifact, side)):
            context = artifact.context_ids(side, e).tolist()
            for s in range(len(samples.offsets) - 1):
                steps = slice(int(samples.offsets[s]), int(samples.offsets[s + 1]))
                tokens = samples.token_id[steps].tolist()
                with torch.no_grad():
                    logits = model(torch.tensor([context + tokens])).logits[0, len(context) - 1 : -1]
                logprobs = nucleus_of(logits, float(attrs["temperature"]), float(attrs["top_p"]))
                probs = logprobs.exp()
                entropy = -torch.where(probs > 0, probs * logprobs, 0.0).sum(dim=-1)
                where = f"{side} example {e} sample {s}"
                np.testing.assert_allclose(samples.entropy[steps], entropy.numpy(), atol=1e-4, err_msg=where)
                sampled = logprobs[torch.arange(len(tokens)), torch.tensor(tokens)]
                np.testing.assert_allclose(samples.logprob[steps], sampled.numpy(), atol=1e-4, err_msg=where)


def test_resume_and_batching_keep_the_same_samples(runs):
    whole, resumed, _ = runs
    for side in SIDE_NAMES:
        for name in ("sample_offsets", "token_id", "entropy", "logprob"):
            np.testing.assert_allclose(
                whole.read(f"branching/{side}/{name}"), resumed.read(f"branching/{side}/{name}"), atol=1e-5
            )
    assert all(e.branching is not None for e in read_examples(resumed))


def test_check_re_derives_stored_sampled_steps_and_catches_a_changed_one(runs, tmp_path):
    artifact = runs[0]
    models = load_side_models(artifact)
    steps = sample_steps(artifact, 8)
    assert len(steps) == 8 and {side for side, *_ in steps} == set(SIDE_NAMES)
    assert verify_branching(artifact, steps, models=models) == []
    path = tmp_path / "tampered.h5"
    path.write_bytes(artifact.path.read_bytes())
    side, e, s, t = steps[0]
    row = int(artifact.read(f"branching/{side}/sample_offsets")[e * 4 + s]) + t
    with h5py.File(path, "a") as f:
        f[f"branching/{side}/entropy"][row] += 0.01
    mismatches = verify_branching(open_artifact(path), steps, models=models)
    assert [(m.example, m.t, m.field) for m in mismatches] == [(e, t, f"branching/{side} sample {s} entropy")]


def test_info_reports_the_branching_factor_per_side_and_the_ratio(runs):
    text = describe(runs[0].path)
    assert "branching factor (BF paper, 4 samples per example): aligned " in text and "; base / aligned " in text


def test_a_file_without_branching_still_opens_and_says_so(runs, tmp_path):
    path = tmp_path / "plain.h5"
    path.write_bytes(runs[0].path.read_bytes())
    with h5py.File(path, "a") as f:
        del f["branching"]
    artifact = open_artifact(path)
    assert not has_branching(artifact)
    assert all(e.branching is None for e in read_examples(artifact))
    assert "branching factor" not in describe(path)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda f: f["branching/base/sample_offsets"].resize((5,)), r"sample_offsets has 5 entries, expected E\*n\+1"),
        (lambda f: f["branching/aligned"].attrs.__delitem__("top_p"), r"attribute top_p of /branching/aligned"),
        (lambda f: f.__delitem__("branching/base"), r"group /branching/base is missing"),
    ],
)
def test_a_broken_branching_group_is_refused_in_one_line(runs, tmp_path, tamper, message):
    path = tmp_path / "bad.h5"
    path.write_bytes(runs[0].path.read_bytes())
    with h5py.File(path, "a") as f:
        tamper(f)
    with pytest.raises(ArtifactError, match=message) as err:
        open_artifact(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "table, needle",
    [
        ("temperature = 1e-300", "[branching] temperature must be at least 0.0001, got 1e-300: logits divided"),
        ("samples = 3", "[branching] samples must be at least 4, got 3: the estimator stops"),
    ],
)
def test_an_unusable_temperature_or_sample_count_is_refused_by_validate_and_run(
    capsys, tmp_path, model_pairs, table, needle
):
    from compute.cli import main

    dataset = write_jsonl(tmp_path / "data.jsonl", DATA)
    config = write_config(
        tmp_path, config_text(model_pairs["llama"], dataset, tmp_path / "out") + f"[branching]\n{table}\n"
    )
    for command in ("validate", "run"):
        assert main([command, str(config)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err
    assert not (tmp_path / "out").exists()


def test_the_smallest_temperature_samples_finite_entropies(tmp_path, model_pairs):
    dataset = write_jsonl(tmp_path / "data.jsonl", DATA[:1])
    table = "[branching]\nsamples = 4\nmax_new_tokens = 4\ntemperature = 0.0001\n"
    artifact = open_artifact(
        run(load_config(write_config(tmp_path, config_text(model_pairs["llama"], dataset, tmp_path / "out") + table)))
    )
    for side in SIDE_NAMES:
        samples = read_branching(artifact, side)[0]
        assert np.isfinite(samples.entropy).all() and np.isfinite(samples.logprob).all()


def test_info_says_why_a_branching_factor_is_missing(runs, monkeypatch):
    """A file written before samples had to be 4 or more: no position reached by 4 samples gives NaN."""
    monkeypatch.setattr(describe_module, "run_branching_factor", lambda examples: float("nan"))
    text = describe(runs[0].path)
    assert "nan" not in text
    assert "aligned none, base none (no example has a position that 4 or more samples reach)" in text
