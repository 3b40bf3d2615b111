"""Teacher-forced scoring: one forward pass per batch per side, statistics in vocabulary chunks.

For a batch of examples each side runs its backbone once over context + o_<T
(right-padded), the hidden states of the answer rows are gathered, and the LM
head is applied to a few rows at a time, so batch x length x vocab logits are
never held at once. Statistics are computed from float32 log-softmax over the
full vocabulary.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from compute.core import statistics
from compute.core.errors import UserError
from compute.engine.model import SideModel

# Logits per chunk, rows x vocab: 32 MiB of float32. glibc serves blocks up to that size from its heap
# and larger ones from fresh pages each time, which on a CPU made every rows x vocab pass twice as slow.
CHUNK_ELEMENTS = 2**23


class ScoringError(UserError):
    """The model cannot be scored this way; one line for the user."""


@dataclass
class ScoreItem:
    """One example to score: each side's context and the one answer o shared by both."""

    contexts: dict[str, list[int]]
    answer: list[int]


def check_logits_path(model: SideModel, name: str) -> None:
    """Backbone + LM head must equal the model's own forward; refuse a model where it does not."""
    probe = torch.arange(1, 9, device=model.device).remainder(model.vocab_size)[None]
    expected = model.own_logits(probe).float()
    got = model.logits(model.hidden_states(probe)).float().to(expected.device)
    if not torch.allclose(got, expected, atol=1e-3, rtol=1e-3):
        raise ScoringError(
            f"[{name}] {model.architecture} post-processes its logits in a way this scorer does not reproduce"
        )


@dataclass
class SharedPrefix:
    """Context tokens every example of a side starts with, and their KV cache (batch of one)."""

    ids: list[int]
    cache: Any

    @classmethod
    def build(cls, model: SideModel, ids: list[int]) -> SharedPrefix:
        return cls(ids, model.prefix_cache(ids))

    def for_batch(self, size: int) -> Any:
        """A fresh copy of the cache for a batch (the forward pass appends to it)."""
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(size)
        return cache


def common_prefix_length(contexts: list[list[int]]) -> int:
    """Tokens all contexts share at the start, leaving at least one token of each context after it."""
    shortest = min(len(c) for c in contexts)
    n = 0
    while n < shortest - 1 and all(c[n] == contexts[0][n] for c in contexts):
        n += 1
    return n


@torch.inference_mode()
def answer_hidden_states(
    model: SideModel, items: list[ScoreItem], side: str, prefix: SharedPrefix | None = None
) -> torch.Tensor:
    """Hidden states that predict each answer token, all items' rows concatenated: (sum T, H).

    With a shared prefix only the rest of each sequence runs, on top of a copy of the prefix's cache.
    """
    skip = len(prefix.ids) if prefix else 0
    sequences = [(item.contexts[side] + item.answer[:-1])[skip:] for item in items]
    width = max(len(s) for s in sequences)
    input_ids = torch.zeros((len(items), width), dtype=torch.long)
    attention_mask = torch.zeros((len(items), skip + width), dtype=torch.long)
    attention_mask[:, :skip] = 1
    for i, seq in enumerate(sequences):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        attention_mask[i, skip : skip + len(seq)] = 1
    extra: dict[str, Any] = {"use_cache": False}
    if prefix:
        position_ids = torch.arange(skip, skip + width)[None].expand(len(items), -1)
        extra = {"past_key_values": prefix.for_batch(len(items)), "position_ids": position_ids.to(model.device)}
    hidden = model.hidden_states(input_ids.to(model.device), attention_mask.to(model.device), **extra)
    rows = []
    for i, item in enumerate(items):
        start = len(item.contexts[side]) - 1 - skip
        rows.append(hidden[i, start : start + len(item.answer)])
    return torch.cat(rows)


@torch.inference_mode()
def position_stats(
    heads: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    hidden: dict[str, torch.Tensor],
    targets: torch.Tensor,
    k: int,
    vocab: int,
) -> dict[str, torch.Tensor]:
    """Every registered statistic (compute/core/statistics.py) per row, by dataset path, a chunk of rows at a time.

    `heads[side]` turns hidden states into logits over `vocab` entries. Each rows x vocab pass costs as much
    as the LM head on a CPU, so each is made once per chunk: one log-softmax per side, and what several
    statistics share (probabilities, top-k, entropies) is kept in the chunk.
    """
    rows_per_chunk = max(1, CHUNK_ELEMENTS // vocab)
    parts: list[dict[str, torch.Tensor]] = []
    for start in range(0, len(targets), rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        logp = {
            side: torch.log_softmax(head(hidden[side][rows]), dim=-1, dtype=torch.float32)
            for side, head in heads.items()
        }
        chunk = statistics.Chunk(logp, targets[rows].to(logp["aligned"].device), k)
        parts.append(statistics.compute_chunk(chunk))
    return {name: torch.cat([part[name].cpu() for part in parts]) for name in parts[0]}


def score_batch(
    models: dict[str, SideModel],
    items: list[ScoreItem],
    k: int,
    prefixes: dict[str, SharedPrefix | None] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Score a batch; for each item {dataset path: (T,) or (T, k) numpy array} for every registered statistic."""
    prefixes = prefixes or {}
    scored = [item for item in items if item.answer]
    if scored:
        hidden = {side: answer_hidden_states(models[side], scored, side, prefixes.get(side)) for side in models}
        targets = torch.tensor([t for item in scored for t in item.answer])
        heads = {side: model.logits for side, model in models.items()}
        vocab = models["aligned"].vocab_size
        dtypes = {dataset: stat.dtype for _, dataset, stat, _ in statistics.columns()}
        stats = {
            name: values.numpy().astype(dtypes[name], copy=False)
            for name, values in position_stats(heads, hidden, targets, k, vocab).items()
        }
    else:
        stats = _empty_columns(k)
    results = []
    row = 0
    for item in items:
        rows = slice(row, row + len(item.answer))
        row += len(item.answer)
        results.append({name: values[rows] for name, values in stats.items()})
    return results


def _empty_columns(k: int) -> dict[str, np.ndarray]:
    return {dataset: stat.empty(k) for _, dataset, stat, _ in statistics.columns()}
