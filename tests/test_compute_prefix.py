"""The shared-prefix path (one KV cache of an in-context prompt per side) equals the plain path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import EXAMPLES, config_text, tiny_gemma3, write_config, write_jsonl

from compute.core.artifact.reader import open_artifact
from compute.core.config import load_config
from compute.engine.model import SideModel, Weights
from compute.engine.run import run
from compute.engine.score import ScoreItem, SharedPrefix, answer_hidden_states, common_prefix_length

PREAMBLE = (
    "# Query:\nThank me.\n# Answer:\nThank you for your question! I'm happy to help.\n\n"
    "# Query:\nExplain.\n# Answer:\nSure! Here are some examples:\n1. The first one\n2. The second one\n\n"
)


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    return tiny_gemma3(tmp_path_factory.mktemp("gemma3"))


def _items(tokenizer):
    prefix = tokenizer(PREAMBLE).input_ids
    items = []
    for example in EXAMPLES[:5]:
        context = (
            prefix + tokenizer(f"# Query:\n{example['instruction']}\n# Answer:\n", add_special_tokens=False).input_ids
        )
        answer = tokenizer(example["response"], add_special_tokens=False).input_ids
        items.append(ScoreItem({"aligned": context}, answer))
    return items


def test_hidden_states_with_a_cached_prefix_equal_the_plain_ones_on_sliding_window_gemma3(gemma3):
    lm, tokenizer = gemma3
    model = SideModel(Weights(lm, torch.device("cpu")))
    items = _items(tokenizer)
    n = common_prefix_length([item.contexts["aligned"] for item in items])
    assert n > 3 * lm.config.sliding_window  # the cache must reach past the window
    prefix = SharedPrefix.build(model, items[0].contexts["aligned"][:n])
    plain = answer_hidden_states(model, items, "aligned")
    cached = answer_hidden_states(model, items, "aligned", prefix)
    assert plain.shape == cached.shape
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-4)
    again = answer_hidden_states(model, items[:2], "aligned", prefix)  # the cache is reusable
    torch.testing.assert_close(again, plain[: len(again)], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
def test_a_run_with_a_shared_prefix_equals_the_plain_run(arch, model_pairs, gemma3, tmp_path, monkeypatch):
    if arch == "gemma3":
        folder = tmp_path / "g3"
        tiny_gemma3(folder)
        pair = {"aligned": folder, "base": folder}
    else:
        pair = model_pairs[arch]
    (tmp_path / "urial.txt").write_text(PREAMBLE + "# Query:\n{instruction}\n# Answer:\n")
    dataset = write_jsonl(tmp_path / "data.jsonl", EXAMPLES)
    built = []
    monkeypatch.setattr(SharedPrefix, "build", _spy(SharedPrefix.build, built))
    arrays = {}
    for reuse in (True, False):
        text = config_text(pair, dataset, tmp_path / f"out-{reuse}", batch_size=3, max_new_tokens=6, reuse_prefix=reuse)
        text = text.replace('template = "chat"', 'template_file = "urial.txt"')
        artifact = open_artifact(run(load_config(write_config(tmp_path, text))))
        arrays[reuse] = {
            name: artifact.read(name)
            for name in (
                "positions/token_id",
                "positions/kl",
                "sides/aligned/topk_ids",
                "sides/aligned/logprob",
                "sides/aligned/rank",
                "sides/aligned/entropy",
                "sides/base/logprob",
            )
        }
    assert len(built) == 1  # the aligned side's preamble; the base side shares too little
    for name, plain in arrays[False].items():
        np.testing.assert_allclose(arrays[True][name], plain, atol=1e-4, rtol=1e-4, err_msg=name)


def _spy(build, calls):
    def spy(*args, **kwargs):
        calls.append(args)
        return build(*args, **kwargs)

    return spy


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_generation_from_a_cached_prefix_equals_plain_generation(arch, model_pairs, tmp_path):
    from compute.engine.generate import generate_answers
    from compute.engine.sides import load_sides

    (tmp_path / "urial.txt").write_text(PREAMBLE + "# Query:\n{instruction}\n# Answer:\n")
    dataset = write_jsonl(tmp_path / "data.jsonl", EXAMPLES)
    text = config_text(model_pairs[arch], dataset, tmp_path / "out").replace(
        'template = "chat"', 'template_file = "urial.txt"'
    )
    side = load_sides(load_config(write_config(tmp_path, text)))["aligned"]
    assert not side.model.has_sliding_window
    contexts = [side.context_ids(side.render(e["instruction"])) for e in EXAMPLES]
    assert len({len(c) for c in contexts}) > 2  # rows of different lengths: a padding hole after the prefix
    n = common_prefix_length(contexts)
    prefix = SharedPrefix.build(side.model, contexts[0][:n])
    plain = generate_answers(side, contexts, 12, ())
    cached = generate_answers(side, contexts, 12, (), prefix)
    assert cached == plain
    assert sum(len(a) for a in plain) > 30


@pytest.mark.parametrize("arch, cache_used", [("gemma3", False), ("llama", True)])
def test_sliding_window_models_generate_without_the_prefix_cache(arch, cache_used, model_pairs, tmp_path, monkeypatch):
    """A padding hole between a cached prefix and a short row's tail would count against a sliding window, so
    such models get the plain layout: the prefix's cache is never copied into their generation."""
    from compute.engine.generate import generate_answers
    from compute.engine.sides import load_sides

    if arch == "gemma3":
        tiny_gemma3(tmp_path / "g3")
        pair = {"aligned": tmp_path / "g3", "base": tmp_path / "g3"}
    else:
        pair = model_pairs[arch]
    (tmp_path / "urial.txt").write_text(PREAMBLE + "# Query:\n{instruction}\n# Answer:\n")
    dataset = write_jsonl(tmp_path / "data.jsonl", EXAMPLES)
    text = config_text(pair, dataset, tmp_path / "out").replace('template = "chat"', 'template_file = "urial.txt"')
    side = load_sides(load_config(write_config(tmp_path, text)))["aligned"]
    contexts = [side.context_ids(side.render(e["instruction"])) for e in EXAMPLES[:3]]
    prefix = SharedPrefix.build(side.model, contexts[0][: common_prefix_length(contexts)])
    copies = []
    monkeypatch.setattr(prefix, "for_batch", _spy(prefix.for_batch, copies))
    answers = generate_answers(side, contexts, 4, (), prefix)
    assert len(answers) == 3
    assert bool(copies) == cache_used
