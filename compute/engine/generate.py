"""Batched greedy decoding of the aligned side with transformers' generate.

An answer stops before the first EOS (the EOS is not a position) and, when
stop strings are configured, before the first of them (URIAL-style prompts
otherwise run on into the next "# Query:").

With a shared prefix (an in-context prompt every example starts with) each row
is laid out as prefix + left padding + the rest of its context, and generation
starts from a copy of the prefix's KV cache. Position ids follow the attention
mask, so the padding hole changes nothing; a sliding-window layer would count
the hole against its window, so such models get the plain layout.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList, StopStringCriteria

from compute.engine.score import SharedPrefix, prefix_hole_tail
from compute.engine.sides import Side


def eos_ids(side: Side) -> list[int]:
    """Every id that ends an answer: the generation config's EOS ids and the tokenizer's."""
    ids = side.model.eos_ids
    if side.tokenizer.eos_token_id is not None:
        ids.append(side.tokenizer.eos_token_id)
    return sorted(set(ids))


_STOP_CRITERIA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> {stop strings: criterion}


def stop_criterion(tokenizer: Any, stop: tuple[str, ...]) -> StopStringCriteria:
    """transformers' stop-string criterion for a tokenizer, built once per run.

    Building one scans the whole vocabulary (2.4 s of CPU for gemma's 262k tokens, and transformers' own cache
    of it missed every time); `generate(stop_strings=...)` built one on every call, i.e. every batch and, for the
    branching factor, every example and side.
    """
    built = _STOP_CRITERIA.setdefault(tokenizer, {})
    if stop not in built:
        built[stop] = StopStringCriteria(tokenizer, list(stop))
    return built[stop]


def stopping_criteria(side: Side, stop: tuple[str, ...], *more: StoppingCriteria) -> StoppingCriteriaList | None:
    """The stop-string criterion (when there are stop strings) and `more`, for generate's stopping_criteria."""
    criteria = ([stop_criterion(side.tokenizer, stop)] if stop else []) + list(more)
    return StoppingCriteriaList(criteria) if criteria else None


class StepCounter(StoppingCriteria):
    """Never stops anything: after each decoding step, tells `on_tokens` how many rows decoded a token (rows
    past their EOS are not counted), so progress moves during a long batch."""

    def __init__(self, on_tokens: Callable[[int], None], ends: list[int]):
        self.on_tokens = on_tokens
        self.ends = torch.tensor(ends, dtype=torch.long)
        self.finished: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        last = input_ids[:, -1]
        if self.finished is None:
            self.finished = torch.zeros_like(last, dtype=torch.bool)
        self.on_tokens(int((~self.finished).sum()))
        self.finished |= torch.isin(last, self.ends.to(last.device))
        return torch.zeros_like(self.finished)


@torch.inference_mode()
def generate_answers(
    side: Side,
    contexts: list[list[int]],
    max_new_tokens: int,
    stop: tuple[str, ...],
    prefix: SharedPrefix | None = None,
    on_tokens: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Greedy answers for a batch of contexts (left-padded), as id lists cut at EOS and stop strings."""
    input_ids, attention_mask, prefix = prefix_hole_tail(side, contexts, prefix)
    width = input_ids.shape[1]
    ends = eos_ids(side)
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=ends or None,
        pad_token_id=side.tokenizer.pad_token_id if side.tokenizer.pad_token_id is not None else 0,
    )
    output = side.model.generate(
        input_ids,
        attention_mask,
        config,
        past_key_values=prefix.for_batch(len(contexts)) if prefix else None,
        stopping_criteria=stopping_criteria(side, stop, *([StepCounter(on_tokens, ends)] if on_tokens else [])),
    )
    return [finish_answer(side, row, ends, stop) for row in output[:, width:].tolist()]


def finish_answer(side: Side, row: list[int], ends: list[int], stop: tuple[str, ...]) -> list[int]:
    """Decoded ids cut before the first EOS, then before the first stop string."""
    cut = next((i for i, t in enumerate(row) if t in ends), len(row))
    return cut_at_stop(side, row[:cut], stop)


def cut_at_stop(side: Side, ids: list[int], stop: tuple[str, ...]) -> list[int]:
    """The longest prefix of ids whose text ends before the first stop string."""
    if not stop:
        return ids
    text = side.tokenizer.decode(ids)
    hits = [text.find(s) for s in stop if s in text]
    if not hits:
        return ids
    kept = text[: min(hits)]
    n = len(ids)
    while n > 0 and not kept.startswith(side.tokenizer.decode(ids[:n])):
        n -= 1
    return ids[:n]
