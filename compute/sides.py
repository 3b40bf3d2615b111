"""Sides: load each side's tokenizer and model, check they tokenize alike, render contexts.

A side is a (model, template) pair. Two sides on the same model (one model,
two templates) share one loaded model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from compute import packaged
from compute.config import PACKAGE_PREFIX, PLACEHOLDER, RunConfig, SideConfig
from compute.errors import UserError


class SideError(UserError):
    """A side that cannot be loaded or used; one line naming the side and the cause."""


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Side:
    name: str
    config: SideConfig
    tokenizer: PreTrainedTokenizerBase
    model: Any  # a transformers causal LM
    device: torch.device
    bos_prefix: list[int]  # special tokens the tokenizer itself puts before a text (usually [BOS])

    def render(self, instruction: str) -> str:
        """The context text for one instruction, before tokenisation."""
        if self.config.is_chat:
            messages = [{"role": "user", "content": instruction}]
            if self.config.system is not None:
                messages.insert(0, {"role": "system", "content": self.config.system})
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.config.template_text.replace(PLACEHOLDER, instruction)

    def context_ids(self, rendered: str) -> list[int]:
        """Token ids of a rendered context: special tokens exactly once (no double BOS), never empty."""
        ids = self.tokenizer(rendered, add_special_tokens=False).input_ids
        if self.bos_prefix and ids[: len(self.bos_prefix)] != self.bos_prefix:
            ids = self.bos_prefix + ids
        if not ids:
            raise SideError(f"[{self.name}] the template renders an empty context; add text or a BOS token")
        return ids

    @property
    def dtype_name(self) -> str:
        return str(self.model.dtype).removeprefix("torch.")

    def artifact_attrs(self) -> dict[str, str]:
        attrs = {"model": self.config.model, "template": self.config.template_label, "dtype": self.dtype_name}
        if self.config.template_file:
            attrs["template_text"] = self.config.template_text
        if self.config.system is not None:
            attrs["system"] = self.config.system
        if self.config.model.startswith(PACKAGE_PREFIX):
            package = self.config.model.removeprefix(PACKAGE_PREFIX)
            attrs["package_version"] = packaged.check_installed(package)
            attrs["gguf_file"] = packaged.KNOWN[package]
        for key in ("gguf_file", "revision"):
            value = getattr(self.config, key)
            if value:
                attrs[key] = value
        return attrs


def check_device(name: str, cfg: SideConfig) -> None:
    """Refuse, before anything loads, a device this machine does not have."""
    if cfg.device_map is not None or cfg.device == "auto":
        return
    try:
        device = torch.device(cfg.device)
    except RuntimeError:
        raise SideError(f"[{name}] device {cfg.device!r} is not a device name (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cpu":
        return
    backend = getattr(torch, device.type, None)
    count = backend.device_count() if backend is not None and hasattr(backend, "device_count") else 0
    where = f"[{name}] device {cfg.device!r}"
    if count == 0:
        raise SideError(f'{where}: no {device.type} device on this machine (use "auto" or "cpu")')
    if device.index is not None and device.index >= count:
        raise SideError(f"{where}: this machine has {count} {device.type} devices, 0-{count - 1}")


def pick_device(requested: str) -> torch.device:
    """auto: this process's GPU (LOCAL_RANK under torchrun) when there is one, else the CPU."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[requested]


def _source(cfg: SideConfig) -> tuple[str, dict[str, Any]]:
    """Where from_pretrained loads this side from, and the keyword arguments it needs."""
    if cfg.model.startswith(PACKAGE_PREFIX):
        return str(packaged.local_copy(cfg.model.removeprefix(PACKAGE_PREFIX))), {}
    kwargs: dict[str, Any] = {}
    if cfg.gguf_file:
        kwargs["gguf_file"] = cfg.gguf_file
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    return cfg.model, kwargs


def load_tokenizer(name: str, cfg: SideConfig) -> PreTrainedTokenizerBase:
    source, kwargs = _source(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise SideError(f"[{name}] cannot load the tokenizer of {cfg.model}: {_first_line(err)}") from None
    if cfg.is_chat and not tokenizer.chat_template:
        raise SideError(f'[{name}] template = "chat" but the tokenizer of {cfg.model} has no chat template')
    return tokenizer


def load_model(name: str, cfg: SideConfig) -> tuple[Any, torch.device]:
    """The model in eval mode and the device its inputs go to.

    With a device_map accelerate places the layers (possibly over several GPUs) and inputs
    go to the device of the input embeddings; otherwise the whole model moves to one device.
    """
    if cfg.device_map is not None and int(os.environ.get("LOCAL_WORLD_SIZE", 1)) > 1:
        raise SideError(
            f"[{name}] device_map spreads one model over this node's GPUs: run one process per node "
            "(torchrun --nproc-per-node 1), not one per GPU"
        )
    spread = cfg.device_map is not None
    device = pick_device("auto" if spread else cfg.device)  # with a device_map only its type counts (for dtype)
    dtype = pick_dtype(cfg.dtype, device)
    source, kwargs = _source(cfg)
    if spread:
        kwargs["device_map"] = cfg.device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except (OSError, ValueError) as err:
        raise SideError(f"[{name}] cannot load the model {cfg.model}: {_first_line(err)}") from None
    if spread:
        device = model.get_input_embeddings().weight.device
    else:
        model.to(device)
    return model.eval(), device


def bos_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The special ids the tokenizer adds before any text (e.g. [BOS]); trailing ones (EOS) are ignored."""
    with_specials = tokenizer("a").input_ids
    plain = tokenizer("a", add_special_tokens=False).input_ids
    for start in range(len(with_specials) - len(plain) + 1):
        if with_specials[start : start + len(plain)] == plain:
            return with_specials[:start]
    return []


def check_same_tokenizer(aligned: PreTrainedTokenizerBase, base: PreTrainedTokenizerBase) -> None:
    """Both sides must map every token to the same id, or their answers are not one sequence."""
    vocab_a, vocab_b = aligned.get_vocab(), base.get_vocab()
    if len(vocab_a) != len(vocab_b):
        raise SideError(
            f"the tokenizers differ: aligned has {len(vocab_a)} tokens, base has {len(vocab_b)}; "
            "both sides must share one tokenizer"
        )
    differing = [tok for tok, i in vocab_a.items() if vocab_b.get(tok) != i]
    if differing:
        example = differing[0]
        raise SideError(
            f"the tokenizers differ: {len(differing)} tokens have other ids "
            f"(e.g. {example!r}: aligned {vocab_a[example]}, base {vocab_b.get(example)}); "
            "both sides must share one tokenizer"
        )


def load_sides(config: RunConfig) -> dict[str, Side]:
    """Devices and tokenizers first (fast, and their checks come before any model loads), then models."""
    for name in ("aligned", "base"):
        check_device(name, config.side(name))
    tokenizers = {name: load_tokenizer(name, config.side(name)) for name in ("aligned", "base")}
    check_same_tokenizer(tokenizers["aligned"], tokenizers["base"])
    vocabulary = len(tokenizers["aligned"])
    if config.top_k > vocabulary:
        raise SideError(
            f"{config.path}: top_k {config.top_k} is larger than the vocabulary of {config.aligned.model} "
            f"({vocabulary} tokens)"
        )
    models: dict[tuple, tuple[Any, torch.device]] = {}
    sides = {}
    for name in ("aligned", "base"):
        cfg = config.side(name)
        if cfg.model_key() not in models:
            models[cfg.model_key()] = load_model(name, cfg)
        model, device = models[cfg.model_key()]
        tokenizer = tokenizers[name]
        sides[name] = Side(name, cfg, tokenizer, model, device, bos_prefix(tokenizer))
    vocab = {name: side.model.get_output_embeddings().out_features for name, side in sides.items()}
    if vocab["aligned"] != vocab["base"]:
        raise SideError(f"the models' output vocabularies differ: aligned {vocab['aligned']}, base {vocab['base']}")
    return sides


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
