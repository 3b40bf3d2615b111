"""Sampled continuations: every recorded number equals a naive recomputation, and a rerun gives the same samples;
samples drawn elsewhere (vLLM) and scored by one teacher-forced pass get the numbers the recorder gets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import BASE_TEMPLATE, config_text, naive_step, tiny_gemma3, write_config, write_jsonl

from compute.core.config import BranchingConfig, load_config
from compute.engine.generate import eos_ids
from compute.engine.sampling import NucleusWarper, sample_example, score_samples
from compute.engine.score import SharedPrefix
from compute.engine.sides import load_sides

SETTINGS = BranchingConfig(samples=5, temperature=0.8, top_p=0.9, max_new_tokens=8, seed=3)


def load_side(kind: str, model_pairs, tmp_path_factory):
    """Llama with its chat template, or a Gemma 3 whose sliding window (8) is shorter than context + samples."""
    folder = tmp_path_factory.mktemp("sampling")
    dataset = write_jsonl(folder / "data.jsonl", [{"instruction": "Thank me."}])
    if kind == "llama":
        text = config_text(model_pairs["llama"], dataset, folder / "out")
    else:
        tiny_gemma3(folder / "gemma3")  # no chat template: both sides get the plain one
        text = config_text({"aligned": folder / "gemma3", "base": folder / "gemma3"}, dataset, folder / "out")
        text = text.replace('template = "chat"', f"template = {json.dumps(BASE_TEMPLATE)}")
    return load_sides(load_config(write_config(folder, text)))["aligned"]


@pytest.fixture(scope="module")
def side(model_pairs, tmp_path_factory):
    return load_side("llama", model_pairs, tmp_path_factory)


@pytest.fixture(scope="module")
def sliding(model_pairs, tmp_path_factory):
    return load_side("gemma3-sliding", model_pairs, tmp_path_factory)


@pytest.fixture(scope="module")
def sampled(side):
    """The samples of example 4, drawn once for the tests below."""
    return sample_example(side, context(side), SETTINGS, (), index=4)


def context(side) -> list[int]:
    return side.context_ids(side.render("Explain cats and code."))


@pytest.mark.parametrize("kind", ["llama", "gemma3-sliding", "gemma3-sliding-on-a-prefix-cache"])
def test_recorded_entropy_and_logprob_match_a_naive_recomputation(kind, request):
    side = request.getfixturevalue("side" if kind == "llama" else "sliding")
    ctx = context(side)
    if kind == "llama":
        samples = request.getfixturevalue("sampled")
    else:
        prefix = SharedPrefix.build(side.model, ctx[:-3]) if kind.endswith("cache") else None
        samples = sample_example(side, ctx, SETTINGS, (), 4, prefix)
    assert samples.n == SETTINGS.samples
    checked = 0
    for entropy, tokens, logprob in zip(
        samples.split(samples.entropy), samples.split(samples.token_id), samples.split(samples.logprob), strict=True
    ):
        for t, token in enumerate(tokens.tolist()):
            want_entropy, want_logprob = naive_step(side, ctx + tokens[:t].tolist(), token, SETTINGS)
            assert entropy[t] == pytest.approx(want_entropy, abs=2e-4)
            assert logprob[t] == pytest.approx(want_logprob, abs=2e-4)
            checked += 1
    assert checked > 20
    assert len(set(map(tuple, (t.tolist() for t in samples.split(samples.token_id))))) > 1  # samples differ


def test_samples_end_with_their_first_eos_and_never_run_past_it(side):
    ends = set(eos_ids(side))
    settings = BranchingConfig(samples=16, temperature=1.0, top_p=1.0, max_new_tokens=40, seed=0)
    samples = sample_example(side, context(side), settings, (), index=0)
    rows = [t.tolist() for t in samples.split(samples.token_id)]
    for row in rows:
        assert 1 <= len(row) <= settings.max_new_tokens
        assert not ends & set(row[:-1])
        assert row[-1] in ends or len(row) == settings.max_new_tokens
    assert any(row[-1] in ends for row in rows), "no sample hit EOS: the cut is not exercised"


def test_a_rerun_gives_the_same_samples_and_another_example_index_others(side, sampled):
    ctx = context(side)
    first = sampled
    torch.manual_seed(123)  # whatever the global RNG held before
    again = sample_example(side, ctx, SETTINGS, (), index=4)
    other = sample_example(side, ctx, SETTINGS, (), index=5)
    np.testing.assert_array_equal(first.offsets, again.offsets)
    np.testing.assert_array_equal(first.token_id, again.token_id)
    np.testing.assert_array_equal(first.entropy, again.entropy)
    assert not np.array_equal(first.token_id, other.token_id)


def test_stop_strings_cut_a_sample_before_them(side, sampled):
    ctx = context(side)
    free = sampled
    text = side.tokenizer.decode(free.split(free.token_id)[0].tolist())
    stop = text[len(text) // 2 :][:2]
    assert stop.strip(), f"no usable stop string in {text!r}"
    cut = sample_example(side, ctx, SETTINGS, (stop,), index=4)
    for tokens in cut.split(cut.token_id):
        assert stop not in side.tokenizer.decode(tokens.tolist())
    assert (
        cut.split(cut.token_id)[0].tolist() == free.split(free.token_id)[0].tolist()[: len(cut.split(cut.token_id)[0])]
    )


def rows_of(samples) -> list[list[int]]:
    return [t.tolist() for t in samples.split(samples.token_id)]


@pytest.mark.parametrize("kind", ["llama", "gemma3-sliding-on-a-prefix-cache"])
def test_samples_scored_by_one_teacher_forced_pass_get_the_recorded_numbers(kind, request):
    """What engine = "vllm" stores: its samples' token ids, cut and scored by score_samples. Here the ids come from
    sample_example, whose recorder saw the very distributions they were drawn from: the numbers must agree to
    float32 rounding (1e-5: the same logits, another batch layout). Rows running on past their EOS (as a sampler
    that does not stop could return them) are cut after it, as sample_example cuts."""
    side = request.getfixturevalue("side" if kind == "llama" else "sliding")
    ctx = context(side)
    prefix = SharedPrefix.build(side.model, ctx[:-3]) if kind.endswith("cache") else None
    drawn = sample_example(side, ctx, SETTINGS, (), 4, prefix)
    ends = eos_ids(side)
    rows = [row + [7, 8] if row[-1] in ends else row for row in rows_of(drawn)]
    scored = score_samples(side, ctx, rows, SETTINGS, (), prefix)
    np.testing.assert_array_equal(scored.offsets, drawn.offsets)
    np.testing.assert_array_equal(scored.token_id, drawn.token_id)
    np.testing.assert_allclose(scored.entropy, drawn.entropy, atol=1e-5, rtol=0)
    np.testing.assert_allclose(scored.logprob, drawn.logprob, atol=1e-5, rtol=0)
    assert len(drawn.token_id) > 10 and drawn.entropy.max() > 0.1


def test_scored_samples_are_cut_before_a_stop_string_and_keep_an_off_nucleus_token_finite(side, sampled):
    ctx = context(side)
    text = side.tokenizer.decode(rows_of(sampled)[0])
    stop = text[len(text) // 2 :][:2]
    cut = score_samples(side, ctx, rows_of(sampled), SETTINGS, (stop,))
    assert rows_of(cut) == rows_of(sample_example(side, ctx, SETTINGS, (stop,), index=4))
    # a token the nucleus leaves out (the least likely one) is scored as if kept: finite, far below the others
    with torch.no_grad():
        unlikely = int(side.model.own_logits(torch.tensor([ctx]))[0, -1].argmin())
    (logprob,) = score_samples(side, ctx, [[unlikely]], SETTINGS, ()).logprob
    assert np.isfinite(logprob) and logprob < sampled.logprob.min() - 5


@pytest.mark.parametrize("spread", [0.5, 4.0, 40.0])
def test_the_nucleus_warper_keeps_what_transformers_top_p_keeps(spread):
    """Peaked rows take the top-k path, flat ones (spread 0.5: the nucleus is wider than 1024) HF's sort."""
    from transformers.generation.logits_process import TopPLogitsWarper

    generator = torch.Generator().manual_seed(0)
    scores = torch.randn((6, 5000), generator=generator) * spread
    for top_p in (0.5, 0.9, 0.99):
        expected = TopPLogitsWarper(top_p)(None, scores.clone())
        got = NucleusWarper(top_p, candidates=1024)(None, scores.clone())
        assert torch.equal(torch.isinf(got), torch.isinf(expected))
        assert torch.equal(got[~torch.isinf(got)], expected[~torch.isinf(expected)])
