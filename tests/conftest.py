"""Tiny offline model pairs for the compute tests, and the helpers several test files share.

A byte-level BPE tokenizer is trained with `tokenizers` on a few lines; small
random Llama and GPT-2 models are saved with `save_pretrained` and loaded by
path through the same code users run. The aligned side is a perturbed copy of
the base side, so that some positions shift and others do not.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import pytest

from compute.core.statistics import SIDE_NAMES

if TYPE_CHECKING:
    from compute.engine.score import SharedPrefix

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


def tiny_gemma3(folder, sliding_window: int = 8):
    """A Gemma 3 text model whose sliding window is shorter than the shared prefix."""
    import torch
    from transformers import Gemma3ForCausalLM

    tokenizer = build_tokenizer(add_bos=True)
    torch.manual_seed(0)
    config = tiny_gemma3_config(len(tokenizer), sliding_window, initializer_range=0.2)
    model = Gemma3ForCausalLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


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


# ---------------------------------------------------------------- shared by several test files

# Answers given and generated, with code, unicode and emoji (the reference check's and the engine's examples).
EXAMPLES = [
    {"id": "one-token", "instruction": "Say one word.", "response": "Sure"},
    {"id": "short", "instruction": "Thank me.", "response": "Thank you for your question!"},
    {
        "id": "long",
        "instruction": "Explain cats and code.",
        "response": "However, it is important to note that I am an AI assistant. The cat sat on the mat. "
        "def add(x, y):\n    return x + y  # code\n12 apples cost 3.50 dollars.",
    },
    {"id": "unicode", "instruction": "Überraschung: naïve café in 東京?", "response": "Überraschung für alle — café."},
    {"id": "emoji", "instruction": "🙂🚀 what do these mean?", "response": "🙂 is a smile and 🚀 a rocket.\n\n"},
    {"id": "generated", "instruction": "Here are some examples:"},
]
REPEATED_EXAMPLES = [dict(e, id=f"{e['id']}-{i}") for i in range(3) for e in EXAMPLES]  # 18, 3 generated


def repeated_examples_config(folder: Path, pair: dict[str, Path], **extra) -> Path:
    """A run of REPEATED_EXAMPLES in `folder` (distributed and sharded runs)."""
    folder.mkdir(exist_ok=True)
    dataset = write_jsonl(folder / "data.jsonl", REPEATED_EXAMPLES)
    return write_config(folder, config_text(pair, dataset, folder / "out", top_k=5, max_new_tokens=8, **extra))


def save_lora(base: Path, folder: Path, seed: int, targets: list[str]) -> Path:
    """A LoRA with random A and B (peft's default B = 0 would change nothing), saved with save_pretrained."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(folder, save_embedding_layers=False)
    return folder


# Mixed decoding (test_compute_decoding, test_compute_rules): a few instructions, a long base template.
DECODING_INSTRUCTIONS = ["Hi there", "Thank you for the cat", "What is 12 apples?", "Sure! Here are some examples"]
LONG_PROMPT = "The cat sat on the mat. " * 4 + "# Query:\n{instruction}\n# Answer:\n"  # a shared prefix to cache
DECODING_MAX_NEW = 8


def long_prompt_config(pair, dataset, folder) -> str:
    """A config whose base side has a long template every context starts with (a shared prefix to cache)."""
    return config_text(pair, dataset, folder).replace(json.dumps(BASE_TEMPLATE), json.dumps(LONG_PROMPT))


def contexts_of(sides) -> dict[str, list[list[int]]]:
    """Each side's context ids of the decoding instructions."""
    return {
        name: [sides[name].context_ids(sides[name].render(i)) for i in DECODING_INSTRUCTIONS] for name in SIDE_NAMES
    }


def prefixes_of(sides, contexts) -> dict[str, SharedPrefix]:
    """The base side's shared-prefix cache of the long template."""
    from compute.engine.score import SharedPrefix

    base = contexts["base"]
    n = next(i for i in range(len(base[0])) if any(c[i] != base[0][i] for c in base))
    assert n >= 16
    return {"base": SharedPrefix.build(sides["base"].model, base[0][:n])}


def decoding_config(folder, pair, table: str, name: str = "run", **extra):
    """A run of the decoding instructions with a config table appended (e.g. a [decoding] rule)."""
    instructions = [{"id": str(i), "instruction": s} for i, s in enumerate(DECODING_INSTRUCTIONS)]
    dataset = write_jsonl(folder / "d.jsonl", instructions)
    text = config_text(pair, dataset, folder / "out", name=name, max_new_tokens=DECODING_MAX_NEW, batch_size=2, **extra)
    return write_config(folder, text + table, name=f"{name}.toml")


def corrupt_dataset(path: Path, dataset: str) -> None:
    """Overwrite the stored bytes of `dataset` in place, keeping the file's size and mtime (so it stays 'the same
    file' to every cache): the reader still accepts it, and reading that column fails."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(0)
    stat = path.stat()
    with path.open("r+b") as out:
        out.seek(info.byte_offset)
        out.write(b"\xff" * info.size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.fixture(autouse=True)
def patient_pages(monkeypatch):
    """Pages wait up to a minute for tables computed in the background (dashboard/background.py): the runs here
    take milliseconds, and a loaded machine must not make a page test see a run as still being computed.
    tests/test_dashboard_background.py sets its own, short waits."""
    monkeypatch.setenv("TDS_TABLES_WAIT_S", "60")


def naive_step(side, prefix: list[int], token: int, settings) -> tuple[float, float]:
    """A sampled step's (entropy, log-prob), the slow way: one forward over the whole prefix, then
    compute.engine.verify's nucleus (temperature, sort, top_p). Torch is imported here: conftest imports none."""
    import torch

    from compute.engine.verify import nucleus_step

    with torch.no_grad():
        logits = side.model.own_logits(torch.tensor([prefix]))[0, -1]
    expected = nucleus_step(logits, token, settings.temperature, settings.top_p)
    assert expected is not None, "the sampled token lies outside the nucleus"
    return expected


@contextlib.contextmanager
def counting_forwards() -> Iterator[list[int]]:
    """The scorer's backbone pass counted while inside: yields the list it appends batch sizes to."""
    from compute.engine import score

    calls: list[int] = []
    real = score.answer_hidden_states

    def counted(model, items, side, prefix=None):
        calls.append(len(items))
        return real(model, items, side, prefix)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(score, "answer_hidden_states", counted)
        yield calls


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (restored after): runs that compare timings or processes stay steady."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
