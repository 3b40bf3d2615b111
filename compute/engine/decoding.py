"""Greedy decoding with both sides stepping together; a rule (compute/core/rules.py) picks whose token is emitted.

Each side keeps its own KV cache over its own context and the answer so far. Rows are left-padded; with a
shared prefix (an in-context prompt every example starts with) each row is prefix + padding + the rest of
its context on a copy of the prefix's cache, as compute/engine/generate.py lays it out, and position ids follow
the attention mask. At each step both sides run one forward pass of the token just emitted, the rule picks
a side per row, and that side's top-1 token is appended for both sides: a mixed answer costs about one
greedy decode per side. An answer ends before an EOS or a stop string, whichever side emitted it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from compute.core import statistics
from compute.core.rules import SIDE_OF, Rule
from compute.engine.generate import cut_at_stop, eos_ids
from compute.engine.score import SharedPrefix
from compute.engine.sides import Side

SIDES = ("aligned", "base")
JS = statistics.BY_NAME["js"]


@dataclass
class Decoded:
    """One answer: its ids, which side emitted each (rules.ALIGNED or BASE) and, when asked for, each step's JS."""

    ids: list[int] = field(default_factory=list)
    source: list[int] = field(default_factory=list)
    js: list[float] = field(default_factory=list)

    def cut(self, n: int) -> Decoded:
        return Decoded(self.ids[:n], self.source[:n], self.js[:n])


class _Stream:
    """One side's batch on its way: the KV cache, the attention mask and each row's next position id."""

    def __init__(self, side: Side, contexts: list[list[int]], prefix: SharedPrefix | None):
        if prefix is not None and side.model.has_sliding_window:
            prefix = None  # the padding hole would count against a sliding window
        self.model = side.model
        head = prefix.ids if prefix else []
        tails = [context[len(head) :] for context in contexts]
        width = len(head) + max(len(tail) for tail in tails)
        pad = side.tokenizer.pad_token_id if side.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(contexts), width), pad, dtype=torch.long)
        self.mask = torch.zeros((len(contexts), width), dtype=torch.long)
        ids[:, : len(head)] = torch.tensor(head, dtype=torch.long)
        self.mask[:, : len(head)] = 1
        for i, tail in enumerate(tails):
            ids[i, width - len(tail) :] = torch.tensor(tail, dtype=torch.long)
            self.mask[i, width - len(tail) :] = 1
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        self.next_position = positions[:, -1] + 1
        cache: Any = prefix.for_batch(len(contexts)) if prefix else None
        skip = len(head)
        hidden, self.cache = self.model.extend(ids[:, skip:], self.mask, positions[:, skip:], cache)
        self.logp = self._log_probs(hidden)

    def push(self, tokens: torch.Tensor) -> None:
        """Append one token per row and compute the next distribution."""
        self.mask = torch.cat([self.mask, torch.ones((len(tokens), 1), dtype=torch.long)], dim=1)
        hidden, self.cache = self.model.extend(tokens[:, None], self.mask, self.next_position[:, None], self.cache)
        self.next_position = self.next_position + 1
        self.logp = self._log_probs(hidden)

    def _log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.model.logits(hidden), dim=-1, dtype=torch.float32)


def step_js(logp: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each row's Jensen-Shannon divergence of the two sides' next-token distributions, as the scorer computes it."""
    return JS.compute(statistics.Chunk(logp, targets=None, k=1), None)


@torch.inference_mode()
def decode_together(
    sides: dict[str, Side],
    contexts: dict[str, list[list[int]]],
    rule: Rule,
    max_new_tokens: int,
    stop: tuple[str, ...] = (),
    prefixes: dict[str, SharedPrefix] | None = None,
    with_js: bool = False,
    on_tokens: Callable[[int], None] | None = None,
) -> list[Decoded]:
    """Greedy answers for a batch (each side's contexts, one per row), each token chosen by `rule`.

    with_js: keep each step's JS in the answers (always computed when the rule needs it); `on_tokens` is told
    after each step how many rows decoded a token (progress during a long batch)."""
    prefixes = prefixes or {}
    streams = {name: _Stream(sides[name], contexts[name], prefixes.get(name)) for name in SIDES}
    n = len(contexts["aligned"])
    ends = set(eos_ids(sides["aligned"])) | set(eos_ids(sides["base"]))
    tokenizer = sides["aligned"].tokenizer
    answers = [Decoded() for _ in range(n)]
    finished = [False] * n
    for step in range(max_new_tokens):
        logp = {name: stream.logp for name, stream in streams.items()}
        best = {name: logp[name].max(dim=-1) for name in SIDES}
        tops = {name: best[name].indices.tolist() for name in SIDES}
        base_top_prob = best["base"].values.exp().tolist()
        js = step_js(logp).tolist() if with_js or rule.needs_js else [0.0] * n
        emitted, stepped = [], 0
        for row, answer in enumerate(answers):
            if finished[row]:
                emitted.append(tops["aligned"][row])  # fed on and ignored
                continue
            previous = answer.source[-1] if answer.source else None
            tops_agree = tops["aligned"][row] == tops["base"][row]
            source = rule.source(previous, base_top_prob[row], tops_agree, js[row])
            token = tops[SIDE_OF[source]][row]
            emitted.append(token)
            if token in ends:
                finished[row] = True
                continue
            answer.ids.append(token)
            stepped += 1
            answer.source.append(source)
            answer.js.append(js[row])
            finished[row] = _has_stop(tokenizer, answer.ids, stop)
        if on_tokens is not None:
            on_tokens(stepped)
        if all(finished) or step == max_new_tokens - 1:
            break
        tokens = torch.tensor(emitted, dtype=torch.long)
        for stream in streams.values():
            stream.push(tokens)
    aligned = sides["aligned"]
    return [answer.cut(len(cut_at_stop(aligned, answer.ids, stop))) for answer in answers]


def _has_stop(tokenizer: Any, ids: list[int], stop: tuple[str, ...]) -> bool:
    if not stop:
        return False
    text = tokenizer.decode(ids)
    return any(s in text for s in stop)


def js_threshold(js: Iterable[list[float]], budget: float) -> float:
    """Cross-sampling's JS threshold for a budget: the (1 - budget) quantile of the per-step JS over the answers
    the receiving side decodes alone, so that about `budget` of those positions are at or above it."""
    values = np.concatenate([np.asarray(x, dtype=np.float64) for x in js] or [np.zeros(0)])
    if len(values) == 0:
        return float("inf")  # nothing was decoded: nothing to insert
    return float(np.quantile(values, 1.0 - budget))
