"""Tiny offline model pairs for the compute tests.

A byte-level BPE tokenizer is trained with `tokenizers` on a few lines; small
random Llama and GPT-2 models are saved with `save_pretrained` and loaded by
path through the same code users run. The aligned side is a perturbed copy of
the base side, so that some positions shift and others do not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JUST_EVAL = ROOT / "data" / "just-eval-instruct.llama-2-7b-chat.json"

TRAINING_LINES = [
    "Thank you for your question! I'm happy to help.",
    "However, it is important to note that I am an AI assistant.",
    "Sure! Here are some examples:\n1. The first one\n2. The second one",
    "def add(x, y):\n    return x + y  # code",
    "The cat sat on the mat. 12 apples cost 3.50 dollars.",
    "Überraschung für alle — naïve café, 東京 and emoji 🙂🚀",
    "# Query:\n# Answer:\n<|user|> <|assistant|> <|system|>",
]

CHAT_TEMPLATE_WITH_BOS = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CHAT_TEMPLATE_PLAIN = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
BASE_TEMPLATE = "# Query:\n{instruction}\n# Answer:\n"


def build_tokenizer(add_bos: bool, vocab_size: int = 400, chat_template: str | None = None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING_LINES * 4, trainer)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = chat_template
    return fast


def _model(arch: str, vocab_size: int, seed: int, noise: float):
    import torch
    from transformers import (
        Gemma2Config,
        Gemma2ForCausalLM,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
            initializer_range=0.2,
        )
        model = LlamaForCausalLM(config)
    elif arch == "gemma2":
        config = Gemma2Config(  # soft-capped logits: the scorer must apply the cap the model's forward applies
            vocab_size=vocab_size,
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=12,
            max_position_embeddings=2048,
            final_logit_softcapping=2.0,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
            initializer_range=0.2,
        )
        model = Gemma2ForCausalLM(config)
    else:
        config = GPT2Config(
            vocab_size=vocab_size,
            n_embd=48,
            n_layer=2,
            n_head=4,
            n_positions=2048,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
            initializer_range=0.2,
        )
        model = GPT2LMHeadModel(config)
    if noise:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(noise * torch.randn(p.shape, generator=generator))
    return model


def tiny_gemma3_config(vocab_size: int, sliding_window: int, **extra):
    """A two-layer Gemma 3 text config (one sliding-window layer, one full), ids 0/1/2 for bos/eos/pad."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=1024,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        **extra,
    )


def save_pair(folder: Path, arch: str, noise: float = 0.02) -> dict[str, Path]:
    """aligned/ and base/ model folders sharing one tokenizer; aligned = base + noise."""
    add_bos = arch in ("llama", "gemma2")
    tokenizer = build_tokenizer(add_bos, chat_template=CHAT_TEMPLATE_WITH_BOS if add_bos else CHAT_TEMPLATE_PLAIN)
    paths = {}
    for side, seed in (("base", 0), ("aligned", 1)):
        model = _model(arch, len(tokenizer), seed, noise if side == "aligned" else 0.0)
        paths[side] = folder / f"{arch}-{side}"
        model.save_pretrained(paths[side])
        tokenizer.save_pretrained(paths[side])
    return paths


@pytest.fixture(scope="session")
def model_pairs(tmp_path_factory) -> dict[str, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("models")
    return {arch: save_pair(folder, arch) for arch in ("llama", "gpt2", "gemma2")}


def write_config(folder: Path, body: str, name: str = "run.toml") -> Path:
    path = folder / name
    path.write_text(body, encoding="utf-8")
    return path


def config_text(pair: dict[str, Path], dataset: Path, out_dir: Path, **extra) -> str:
    """A run config for a model pair: aligned with its chat template, base with a plain one."""
    lines = [
        'name = "{}"'.format(extra.pop("name", "run")),
        f'dataset = "{dataset}"',
        f'out_dir = "{out_dir}"',
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    lines += [
        "[aligned]",
        f'model = "{pair["aligned"]}"',
        'template = "chat"',
        "[base]",
        f'model = "{pair["base"]}"',
        f"template = {json.dumps(BASE_TEMPLATE)}",
    ]
    return "\n".join(lines) + "\n"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m compute ...` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "compute", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """alpha.h5 and beta.h5 (tests/dashboard_helpers.py) as the dashboard's artifacts folder."""
    from dashboard_helpers import small_runs

    directory = tmp_path / "runs"
    small_runs(directory)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    return directory


@pytest.fixture(autouse=True)
def patient_pages(monkeypatch):
    """Pages wait up to a minute for tables computed in the background (dashboard/background.py): the runs here
    take milliseconds, and a loaded machine must not make a page test see a run as still being computed.
    tests/test_dashboard_background.py sets its own, short waits."""
    monkeypatch.setenv("TDS_TABLES_WAIT_S", "60")
