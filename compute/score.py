"""Teacher-forced scoring: one forward pass per batch per side, statistics in vocabulary chunks.

For a batch of examples each side runs its backbone once over context + o_<T
(right-padded), the hidden states of the answer rows are gathered, and the LM
head is applied to a few rows at a time, so batch x length x vocab logits are
never held at once. Statistics are computed from float32 log-softmax over the
full vocabulary.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from compute.model import SideModel

# Logits per chunk, rows x vocab: 32 MiB of float32. glibc serves blocks up to that size from its heap
# and larger ones from fresh pages each time, which on a CPU made every rows x vocab pass twice as slow.
CHUNK_ELEMENTS = 2**23


class ScoringError(Exception):
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


def _side_stats(logp: torch.Tensor, p: torch.Tensor, targets: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """One side's statistics from its log-probabilities and probabilities (rows x vocab)."""
    top = logp.topk(k, dim=-1)
    chosen = logp.gather(-1, targets[:, None])
    return {
        "topk_ids": top.indices,
        "topk_logprobs": top.values,
        "logprob": chosen[:, 0],
        "rank": (logp > chosen).sum(-1, dtype=torch.int32),  # int32: five times faster than int64 on a CPU
        "entropy": -torch.nansum(p * logp, dim=-1),  # nan only where p = 0 and log p = -inf: a 0 term
    }


@torch.inference_mode()
def position_stats(
    models: dict[str, SideModel], hidden: dict[str, torch.Tensor], targets: torch.Tensor, k: int
) -> dict[str, Any]:
    """Per-row statistics of both sides and KL(aligned || base), computed a chunk of rows at a time.

    Each rows x vocab pass costs as much as the LM head on a CPU, so each is made once: one
    log-softmax and one exp per side, and sums that skip 0 * -inf terms instead of masking them.
    """
    vocab = models["aligned"].vocab_size
    chunk = max(1, CHUNK_ELEMENTS // vocab)
    parts: list[dict[str, Any]] = []
    for start in range(0, len(targets), chunk):
        rows = slice(start, start + chunk)
        logp = {
            side: torch.log_softmax(models[side].logits(hidden[side][rows]), dim=-1, dtype=torch.float32)
            for side in models
        }
        p = {side: logp[side].exp() for side in models}
        part = {side: _side_stats(logp[side], p[side], targets[rows].to(logp[side].device), k) for side in models}
        diff = logp["aligned"] - logp["base"].to(logp["aligned"].device)
        part["kl"] = torch.nansum(p["aligned"] * diff, dim=-1)  # nan only where p_aligned = 0: a 0 term
        parts.append(part)
    return {
        "kl": torch.cat([part["kl"] for part in parts]),
        **{side: {key: torch.cat([part[side][key] for part in parts]) for key in parts[0][side]} for side in models},
    }


STAT_KEYS = ("topk_ids", "topk_logprobs", "logprob", "rank", "entropy")


def score_batch(
    models: dict[str, SideModel],
    items: list[ScoreItem],
    k: int,
    prefixes: dict[str, SharedPrefix | None] | None = None,
) -> list[dict[str, Any]]:
    """Score a batch; for each item {"kl": (T,), side: {stat: array}} as numpy, float32 / int32."""
    prefixes = prefixes or {}
    scored = [item for item in items if item.answer]
    if scored:
        hidden = {side: answer_hidden_states(models[side], scored, side, prefixes.get(side)) for side in models}
        targets = torch.tensor([t for item in scored for t in item.answer])
        stats = _to_numpy(position_stats(models, hidden, targets, k))
    else:
        empty = {key: np.zeros((0, k) if key.startswith("topk") else 0, np.float32) for key in STAT_KEYS}
        stats = {"kl": np.zeros(0, np.float32), **{side: empty for side in models}}
    results = []
    row = 0
    for item in items:
        rows = slice(row, row + len(item.answer))
        row += len(item.answer)
        per_item = {side: {key: stats[side][key][rows] for key in STAT_KEYS} for side in models}
        results.append({"kl": stats["kl"][rows], **per_item})
    return results


def _to_numpy(stats: dict[str, Any]) -> dict[str, Any]:
    def convert(t: torch.Tensor) -> np.ndarray:
        array = t.cpu().numpy()
        return array.astype(np.int32) if array.dtype.kind in "iu" else array.astype(np.float32)

    return {key: convert(v) if isinstance(v, torch.Tensor) else _to_numpy(v) for key, v in stats.items()}
