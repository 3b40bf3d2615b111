"""Both sides stepping together; a rule of the registry (compute/core/rules/) decides what is emitted.

Each side keeps its own KV cache over its own context and the answer so far. Rows are left-padded; with a
shared prefix (an in-context prompt every example starts with) each row is prefix + padding + the rest of
its context on a copy of the prefix's cache, as compute/engine/generate.py lays it out, and position ids follow
the attention mask. At each step both sides run one forward pass of the token just emitted and the rule decides
per row: a top-1 rule picks a side whose top-1 token is appended for both sides; a logit rule decodes from its
combination of the two sides' log-probabilities (greedy, or sampled). A mixed answer costs about one decode
per side. An answer ends before an EOS or a stop string, whichever side emitted it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from compute.core import statistics
from compute.core.rules import ALIGNED, BASE, MIXED, SIDE_OF, Rule, Step
from compute.engine.generate import cut_at_stop, eos_ids
from compute.engine.score import SharedPrefix, prefix_hole_tail
from compute.engine.sides import Side

SIDES = ("aligned", "base")
JS = statistics.BY_NAME["js"]


@dataclass
class Decoded:
    """One answer: its ids, whose token each was (rules.ALIGNED, BASE or MIXED), the decoder's log-probability of
    each under the aligned side, the base side and the distribution it was decoded from, and (asked for) each
    step's JS."""

    ids: list[int] = field(default_factory=list)
    source: list[int] = field(default_factory=list)
    logprobs: list[tuple[float, float, float]] = field(default_factory=list)
    js: list[float] = field(default_factory=list)

    def cut(self, n: int) -> Decoded:
        return Decoded(self.ids[:n], self.source[:n], self.logprobs[:n], self.js[:n])


class _Stream:
    """One side's batch on its way: the KV cache, the attention mask and each row's next position id."""

    def __init__(self, side: Side, contexts: list[list[int]], prefix: SharedPrefix | None):
        self.model = side.model
        ids, self.mask, prefix = prefix_hole_tail(side, contexts, prefix)
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        self.next_position = positions[:, -1] + 1
        cache: Any = prefix.for_batch(len(contexts)) if prefix else None
        skip = len(prefix.ids) if prefix else 0
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
    """Answers for a batch (each side's contexts, one per row), each token chosen by `rule`.

    with_js: keep each step's JS in the answers (always computed when the rule needs it); `on_tokens` is told
    after each step how many rows decoded a token (progress during a long batch)."""
    prefixes = prefixes or {}
    streams = {name: _Stream(sides[name], contexts[name], prefixes.get(name)) for name in SIDES}
    n = len(contexts["aligned"])
    ends = set(eos_ids(sides["aligned"])) | set(eos_ids(sides["base"]))
    tokenizer = sides["aligned"].tokenizer
    pick = _Picker(rule)
    answers = [Decoded() for _ in range(n)]
    finished = [False] * n
    for step in range(max_new_tokens):
        logp = {name: stream.logp for name, stream in streams.items()}
        tops = {name: logp[name].argmax(dim=-1).tolist() for name in SIDES}
        js = step_js(logp).tolist() if with_js or rule.needs_js else [0.0] * n
        stepped = 0
        tokens, sources, decoded = pick(logp, tops, answers, js)
        chosen = torch.tensor(tokens, dtype=torch.long)
        under = {name: logp[name].gather(-1, chosen[:, None])[:, 0].tolist() for name in SIDES}
        for row, answer in enumerate(answers):
            if finished[row]:
                continue
            if tokens[row] in ends:
                finished[row] = True
                continue
            answer.ids.append(tokens[row])
            answer.source.append(sources[row])
            stepped += 1
            answer.logprobs.append((under["aligned"][row], under["base"][row], decoded[row]))
            answer.js.append(js[row])
            finished[row] = _has_stop(tokenizer, answer.ids, stop)
        if on_tokens is not None:
            on_tokens(stepped)
        if all(finished) or step == max_new_tokens - 1:
            break
        for stream in streams.values():
            stream.push(chosen)
    aligned = sides["aligned"]
    return [answer.cut(len(cut_at_stop(aligned, answer.ids, stop))) for answer in answers]


class _Picker:
    """One step's choice for every row: (tokens, sources, each token's log-probability under what it came from)."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self.generator = torch.Generator().manual_seed(int(rule.params.get("seed", 0)))

    def __call__(self, logp: dict[str, torch.Tensor], tops: dict[str, list[int]], answers: list[Decoded], js):
        if self.rule.spec.mixture is not None:
            return self._from_mixture(logp, tops)
        base_top_prob = logp["base"].max(dim=-1).values.exp().tolist()
        tokens, sources = [], []
        for row, answer in enumerate(answers):
            step = Step(
                t=len(answer.ids),
                previous=answer.source[-1] if answer.source else None,
                base_top_prob=base_top_prob[row],
                tops_agree=tops["aligned"][row] == tops["base"][row],
                js=js[row],
            )
            source = self.rule.source(step)
            sources.append(source)
            tokens.append(tops[SIDE_OF[source]][row])
        chosen = torch.tensor(tokens, dtype=torch.long)[:, None]
        emitting = torch.stack([logp[SIDE_OF[s]][row] for row, s in enumerate(sources)])
        return tokens, sources, emitting.gather(-1, chosen)[:, 0].tolist()

    def _from_mixture(self, logp: dict[str, torch.Tensor], tops: dict[str, list[int]]):
        """A logit rule: the log-softmax of the rule's combination, its argmax or a sample (temperature, top-p)."""
        params = self.rule.params
        mixed = torch.log_softmax(self.rule.spec.mixture(params, logp["aligned"], logp["base"]), dim=-1)
        if self.rule.spec.sampled(params):
            chosen = _sample(mixed / params["temperature"], params["top_p"], self.generator)
        else:
            chosen = mixed.argmax(dim=-1)
        tokens = chosen.tolist()
        sources = [
            ALIGNED if token == tops["aligned"][row] else BASE if token == tops["base"][row] else MIXED
            for row, token in enumerate(tokens)
        ]
        return tokens, sources, mixed.gather(-1, chosen[:, None])[:, 0].tolist()


def _sample(scores: torch.Tensor, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """One token per row from softmax(scores), within the smallest set of top tokens whose mass reaches top_p."""
    probs = torch.softmax(scores, dim=-1)
    ordered, order = probs.sort(dim=-1, descending=True)
    outside = ordered.cumsum(dim=-1) - ordered >= top_p  # the mass before a token already reaches top_p
    ordered = ordered.masked_fill(outside, 0.0)
    drawn = torch.multinomial(ordered, 1, generator=generator)
    return order.gather(-1, drawn)[:, 0]


def _has_stop(tokenizer: Any, ids: list[int], stop: tuple[str, ...]) -> bool:
    if not stop:
        return False
    text = tokenizer.decode(ids)
    return any(s in text for s in stop)
