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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from compute.core import statistics
from compute.core.errors import UserError
from compute.core.statistics import SIDE_NAMES
from compute.engine.model import SideModel

if TYPE_CHECKING:
    from compute.engine.sides import Side

# Logits per chunk, rows x vocab: 32 MiB of float32. glibc serves blocks up to that size from its heap
# and larger ones from fresh pages each time, which on a CPU made every rows x vocab pass twice as slow.
CHUNK_ELEMENTS = 2**23


class ScoringError(UserError):
    """The model cannot be scored this way; one line for the user."""


@dataclass
class ScoreItem:
    """One example to score: each side's (cell's) context and the one answer o shared by all."""

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


def prefix_hole_tail(
    side: Side, contexts: list[list[int]], prefix: SharedPrefix | None
) -> tuple[torch.Tensor, torch.Tensor, SharedPrefix | None]:
    """A batch of contexts laid out for decoding: the shared prefix (whose KV cache is reused), left padding,
    then each context's rest; the ids, the attention mask and the prefix actually used (none on a side with a
    sliding window, which would count the padding hole)."""
    if prefix is not None and side.model.has_sliding_window:
        prefix = None
    head = prefix.ids if prefix else []
    tails = [context[len(head) :] for context in contexts]
    width = len(head) + max(len(tail) for tail in tails)
    pad = side.tokenizer.pad_token_id if side.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(contexts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(contexts), width), dtype=torch.long)
    ids[:, : len(head)] = torch.tensor(head, dtype=torch.long)
    mask[:, : len(head)] = 1
    for i, tail in enumerate(tails):
        ids[i, width - len(tail) :] = torch.tensor(tail, dtype=torch.long)
        mask[i, width - len(tail) :] = 1
    return ids, mask, prefix


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


Pair = tuple[str, str]  # (the cell in the aligned role, the cell in the base role)
ONE_PAIR: tuple[Pair, ...] = (("aligned", "base"),)


@torch.inference_mode()
def position_stats(
    heads: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    hidden: dict[str, torch.Tensor],
    targets: torch.Tensor,
    k: int,
    vocab: int,
    pairs: tuple[Pair, ...] = ONE_PAIR,
) -> dict[Pair, dict[str, torch.Tensor]]:
    """Every registered statistic (compute/core/statistics.py) per row, by pair and dataset path, a chunk of rows at
    a time.

    `heads[cell]` turns hidden states into logits over `vocab` entries. Each rows x vocab pass costs as much
    as the LM head on a CPU, so each is made once per chunk: one log-softmax per cell, whatever the number of
    pairs it is in, and what several statistics share (probabilities, top-k, entropies) is kept in the chunk.
    """
    rows_per_chunk = max(1, CHUNK_ELEMENTS // vocab)
    parts: dict[Pair, list[dict[str, torch.Tensor]]] = {pair: [] for pair in pairs}
    for start in range(0, len(targets), rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        logp = {
            cell: torch.log_softmax(head(hidden[cell][rows]), dim=-1, dtype=torch.float32)
            for cell, head in heads.items()
        }
        device = next(iter(logp.values())).device
        chunk = statistics.Chunk(logp, targets[rows].to(device), k, roles=dict(zip(SIDE_NAMES, pairs[0], strict=True)))
        for pair in pairs:
            parts[pair].append(statistics.compute_chunk(chunk.for_pair(*pair)))
    return {
        pair: {name: torch.cat([part[name].cpu() for part in chunks]) for name in chunks[0]}
        for pair, chunks in parts.items()
    }


def score_batch(
    models: dict[str, SideModel],
    items: list[ScoreItem],
    k: int,
    prefixes: dict[str, SharedPrefix | None] | None = None,
    pairs: tuple[Pair, ...] = ONE_PAIR,
) -> list[dict[Pair, dict[str, np.ndarray]]]:
    """Score a batch: each model (a cell: a side's weights under its template) runs once, whatever the number of
    pairs it is in. For each item and pair, {dataset path: (T,) or (T, k) numpy array} for every registered
    statistic, the pair's cells in the aligned and base roles."""
    prefixes = prefixes or {}
    scored = [item for item in items if item.answer]
    if scored:
        hidden = {cell: answer_hidden_states(models[cell], scored, cell, prefixes.get(cell)) for cell in models}
        targets = torch.tensor([t for item in scored for t in item.answer])
        heads = {cell: model.logits for cell, model in models.items()}
        vocab = next(iter(models.values())).vocab_size
        dtypes = {dataset: stat.dtype for _, dataset, stat, _ in statistics.columns()}
        stats = {
            pair: {name: values.numpy().astype(dtypes[name], copy=False) for name, values in columns.items()}
            for pair, columns in position_stats(heads, hidden, targets, k, vocab, pairs).items()
        }
    else:
        stats = {pair: _empty_columns(k) for pair in pairs}
    results = []
    row = 0
    for item in items:
        rows = slice(row, row + len(item.answer))
        row += len(item.answer)
        results.append({pair: {name: v[rows] for name, v in columns.items()} for pair, columns in stats.items()})
    return results


def _empty_columns(k: int) -> dict[str, np.ndarray]:
    return {dataset: stat.empty(k) for _, dataset, stat, _ in statistics.columns()}
