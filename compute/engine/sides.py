"""Sides: load each side's tokenizer and model, check they tokenize alike, render contexts.

A side is a (model, template) pair, where the model may carry a PEFT adapter.
Sides on the same base weights share one loaded copy (compute/engine/model.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from compute.core import side_attrs, sources
from compute.core.config import PLACEHOLDER, RunConfig, SideConfig
from compute.core.errors import one_line
from compute.engine.model import SideError, SideModel, check_device, load_side_models

__all__ = ["Side", "SideError", "load_sides"]


@dataclass
class Side:
    name: str
    config: SideConfig
    tokenizer: PreTrainedTokenizerBase
    model: SideModel
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

    def artifact_attrs(self, artifact_dir: Path) -> dict[str, str]:
        """The side's attributes in an artifact written to `artifact_dir` (compute/core/side_attrs.py)."""
        return side_attrs.written(self.config, artifact_dir, self.model.dtype_name)


def load_tokenizer(name: str, cfg: SideConfig) -> PreTrainedTokenizerBase:
    """The base model's tokenizer (an adapter keeps its base's vocabulary)."""
    fields = sources.fields_of(cfg)
    kind = sources.kind_of(fields)
    location, kwargs = kind.location(fields)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as err:
        raise SideError(f"[{name}] cannot load the tokenizer of {cfg.model} ({kind.name}): {one_line(err)}") from None
    if cfg.is_chat and not tokenizer.chat_template:
        raise SideError(f'[{name}] template = "chat" but the tokenizer of {cfg.model} has no chat template')
    return tokenizer


def bos_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The special ids the tokenizer adds before any text (e.g. [BOS]); trailing ones (EOS) are ignored."""
    with_specials = tokenizer("a").input_ids
    plain = tokenizer("a", add_special_tokens=False).input_ids
    for start in range(len(with_specials) - len(plain) + 1):
        if with_specials[start : start + len(plain)] == plain:
            return with_specials[:start]
    return []


def check_same_tokenizer(aligned: PreTrainedTokenizerBase, base: PreTrainedTokenizerBase, name: str = "base") -> None:
    """Every side must map every token to the same id as the aligned side, or their answers are not one sequence."""
    vocab_a, vocab_b = aligned.get_vocab(), base.get_vocab()
    if len(vocab_a) != len(vocab_b):
        raise SideError(
            f"the tokenizers differ: aligned has {len(vocab_a)} tokens, {name} has {len(vocab_b)}; "
            "both sides must share one tokenizer"
        )
    differing = [tok for tok, i in vocab_a.items() if vocab_b.get(tok) != i]
    if differing:
        example = differing[0]
        raise SideError(
            f"the tokenizers differ: {len(differing)} tokens have other ids "
            f"(e.g. {example!r}: aligned {vocab_a[example]}, {name} {vocab_b.get(example)}); "
            "both sides must share one tokenizer"
        )


def load_sides(config: RunConfig) -> dict[str, Side]:
    """Every side (cell) of the run, by name. Devices and tokenizers first (fast, and their checks come before
    any model loads), then models; cells on the same weights share one loaded copy."""
    cells = config.cells()
    for name, cfg in cells.items():
        check_device(name, cfg)
    tokenizers = {name: load_tokenizer(name, cfg) for name, cfg in cells.items()}
    for name in ("base", *config.sides):  # a control's crossed cells take their tokenizers from these
        check_same_tokenizer(tokenizers["aligned"], tokenizers[name], name)
    vocabulary = len(tokenizers["aligned"])
    if config.top_k > vocabulary:
        raise SideError(
            f"{config.path}: top_k {config.top_k} is larger than the vocabulary of {config.aligned.model} "
            f"({vocabulary} tokens)"
        )
    models = load_side_models(cells)
    sides = {
        name: Side(name, cells[name], tokenizers[name], models[name], bos_prefix(tokenizers[name])) for name in cells
    }
    vocab = {name: side.model.vocab_size for name, side in sides.items()}
    for name, size in vocab.items():
        if size != vocab["aligned"]:
            raise SideError(f"the models' output vocabularies differ: aligned {vocab['aligned']}, {name} {size}")
    return sides
