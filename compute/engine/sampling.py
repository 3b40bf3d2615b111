"""Sampled continuations for the branching factor (compute/core/branching.py): drawn with transformers' generate,
or drawn by vLLM (engine = "vllm") and scored here.

A side samples n continuations of one example's context in one generate call:
the context runs once (on top of the side's shared-prefix cache, when it has
one), its KV cache is copied n times, and each step is one forward for all n
samples (what num_return_sequences = n does, without running the context n
times). The temperature and top-p warpers are transformers' own (top-p with a
faster exact path), passed as logits processors with a recorder after them
(generate puts processors it builds itself after the ones it is given, so its
own warpers are switched off). At each step the recorder takes the entropy of
the warped, renormalised distribution, and keeps that step's log-probabilities
only until the next step, where input_ids shows the token that was sampled from
them: no step's full-vocabulary scores outlive the next step.

A sample ends with its first EOS (the EOS step is kept: stopping is one of the
branches, and the paper's vLLM samples keep it) or, when stop strings are
configured, before the first of them (as answers are cut). The global torch
RNG is seeded with seed + the example's dataset index before each call, so an
example's samples do not depend on batching, resuming or the rank.

Samples vLLM drew (compute/engine/vllm_engine.py) come as token ids only. They
are cut the same way and scored by one teacher-forced pass per example and
side over its n samples (the context once, its KV cache copied n times): at
each step the same warpers and the same entropy as the recorder's, from the
model's full-vocabulary logits. vLLM's nucleus and this one can differ for a
token right at the top-p boundary (float rounding): the sampled token is always
kept in the nucleus it is scored in, so its log-prob is finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from compute.core.branching import ExampleSamples
from compute.core.config import BranchingConfig
from compute.engine.generate import cut_at_stop, eos_ids, stopping_criteria
from compute.engine.score import CHUNK_ELEMENTS, SharedPrefix
from compute.engine.sides import Side

NUCLEUS_MARGIN = 1e-4  # float rounding between two ways of summing probabilities must not move the boundary


class NucleusWarper(TopPLogitsWarper):
    """transformers' top-p warper without its full-vocabulary sort when the nucleus lies in the top `candidates`.

    A token is kept when the probability of the tokens ranked above it is below top_p (HF's rule). If the top
    `candidates` tokens of every row hold top_p or more, the rest are outside the nucleus and a top-k finds it;
    otherwise the row set goes through HF's sort. (Sorting 262k logits per row was half of a step on a CPU.)
    """

    def __init__(self, top_p: float, candidates: int = 1024):
        super().__init__(top_p)
        self.candidates = candidates

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float(), dim=-1)
        top = probs.topk(min(self.candidates, probs.shape[-1]), dim=-1)
        mass = top.values.cumsum(dim=-1)
        if not bool((mass[:, -1] >= self.top_p + NUCLEUS_MARGIN).all()):
            return super().__call__(input_ids, scores)
        keep_sorted = mass - top.values < self.top_p
        keep = torch.zeros_like(probs, dtype=torch.bool).scatter(1, top.indices, keep_sorted)
        return scores.masked_fill(~keep, self.filter_value)


class StepRecorder(LogitsProcessor):
    """Placed after the warpers: per step, the truncated entropy and the sampled token's truncated log-prob."""

    def __init__(self, context_width: int):
        self.context_width = context_width
        self.entropy: list[torch.Tensor] = []  # one (rows,) tensor per step
        self.logprob: list[torch.Tensor] = []  # one (rows,) tensor per step, filled a step late
        self._pending: torch.Tensor | None = None  # (rows, V) log-probs of the step whose token is not yet known

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] > self.context_width:
            self.take_sampled(input_ids[:, -1])
        logprobs = torch.log_softmax(scores.float(), dim=-1)
        self.entropy.append(entropy_of(logprobs))
        self._pending = logprobs
        return scores

    def take_sampled(self, tokens: torch.Tensor) -> None:
        """Record the log-prob of the tokens sampled at the pending step."""
        assert self._pending is not None
        self.logprob.append(self._pending.gather(1, tokens[:, None]).squeeze(1))
        self._pending = None


def entropy_of(logprobs: torch.Tensor) -> torch.Tensor:
    """Per row, the entropy of a distribution given as log-probabilities (0 log 0 = 0), nats."""
    probs = logprobs.exp()
    return -torch.where(probs > 0, probs * logprobs, 0.0).sum(dim=-1)


def truncated_steps(
    logits: torch.Tensor, tokens: torch.Tensor, settings: BranchingConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of logits: the entropy of the temperature-scaled, top-p-truncated, renormalised distribution, and
    the log-prob of that row's sampled token in it (kept in the nucleus whatever the boundary's rounding)."""
    scaled = TemperatureLogitsWarper(settings.temperature)(tokens[:, None], logits.float())
    truncated = NucleusWarper(settings.top_p)(tokens[:, None], scaled)
    sampled = torch.zeros_like(truncated, dtype=torch.bool).scatter(1, tokens[:, None], True)
    logprobs = torch.log_softmax(torch.where(sampled, scaled, truncated), dim=-1)
    return entropy_of(logprobs), logprobs.gather(1, tokens[:, None]).squeeze(1)


def sample_length(side: Side, row: list[int], ends: list[int], stop: tuple[str, ...]) -> int:
    """How many sampled steps a sample keeps: through its first EOS, or up to before a stop string."""
    eos_at = next((i for i, t in enumerate(row) if t in ends), None)
    body = row if eos_at is None else row[:eos_at]
    kept = cut_at_stop(side, body, stop)
    if eos_at is not None and len(kept) == len(body):
        return eos_at + 1
    return len(kept)


def context_cache(side: Side, context: list[int], prefix: SharedPrefix | None) -> Any:
    """The KV cache of all but the last context token (batch of one), reusing the prefix's; None for 1 token."""
    if len(context) == 1:
        return None
    if prefix is None or context[: len(prefix.ids)] != prefix.ids:
        return side.model.prefix_cache(context[:-1])
    cache = prefix.for_batch(1)
    rest = context[len(prefix.ids) : -1]
    if rest:  # the forward appends the rest to the cache in place
        side.model.hidden_states(torch.tensor([rest], device=side.model.device), past_key_values=cache, use_cache=True)
    return cache


@torch.inference_mode()
def sample_example(
    side: Side,
    context: list[int],
    settings: BranchingConfig,
    stop: tuple[str, ...],
    index: int,
    prefix: SharedPrefix | None = None,
) -> ExampleSamples:
    """`settings.samples` continuations of one context, seeded by the example's dataset index."""
    n = settings.samples
    ends = eos_ids(side)
    pad = side.tokenizer.pad_token_id if side.tokenizer.pad_token_id is not None else 0
    recorder = StepRecorder(len(context))
    processors = LogitsProcessorList(
        [TemperatureLogitsWarper(settings.temperature), NucleusWarper(settings.top_p), recorder]
    )
    config = GenerationConfig(
        do_sample=True,
        max_new_tokens=settings.max_new_tokens,
        eos_token_id=ends or None,
        pad_token_id=pad,
        # generate's own warpers would run after the recorder: all off (explicitly, or the model's defaults apply)
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        min_p=0.0,
        typical_p=1.0,
        epsilon_cutoff=0.0,
        eta_cutoff=0.0,
    )
    torch.manual_seed(settings.seed + index)
    cache = context_cache(side, context, prefix)
    if cache is not None:
        cache.batch_repeat_interleave(n)
    input_ids = torch.tensor([context] * n, dtype=torch.long)
    output = side.model.generate(
        input_ids,
        torch.ones_like(input_ids),
        config,
        past_key_values=cache,
        logits_processor=processors,
        stopping_criteria=stopping_criteria(side, stop),
    )
    recorder.take_sampled(output[:, -1])
    rows = output[:, len(context) :].tolist()
    entropy = torch.stack(recorder.entropy, dim=1).cpu().tolist()
    logprob = torch.stack(recorder.logprob, dim=1).cpu().tolist()
    lengths = [sample_length(side, row, ends, stop) for row in rows]
    return ExampleSamples.from_lists(
        [e[:n_kept] for e, n_kept in zip(entropy, lengths, strict=True)],
        [r[:n_kept] for r, n_kept in zip(rows, lengths, strict=True)],
        [p[:n_kept] for p, n_kept in zip(logprob, lengths, strict=True)],
    )


@torch.inference_mode()
def score_samples(
    side: Side,
    context: list[int],
    rows: list[list[int]],
    settings: BranchingConfig,
    stop: tuple[str, ...],
    prefix: SharedPrefix | None = None,
) -> ExampleSamples:
    """Continuations drawn elsewhere (vLLM) from `context`, cut as sample_example cuts its own, with each step's
    truncated entropy and log-prob from one teacher-forced pass over the n samples."""
    ends = eos_ids(side)
    kept = [row[: sample_length(side, row, ends, stop)] for row in rows]
    width = max(map(len, kept), default=0)
    steps = [(s, t) for s, row in enumerate(kept) for t in range(len(row))]
    if not steps:
        return ExampleSamples.from_lists([[] for _ in kept], kept, [[] for _ in kept])
    cache = context_cache(side, context, prefix)
    if cache is not None:
        cache.batch_repeat_interleave(len(kept))
    # each row feeds the context's last token and its sample but the last token; right padding is never attended to
    feeds = [([context[-1], *row[:-1]] if row else []) + [0] * (width - len(row)) for row in kept]
    hidden = side.model.hidden_states(
        torch.tensor(feeds, device=side.model.device), past_key_values=cache, use_cache=cache is not None
    )
    rows_at, steps_at = (torch.tensor(axis, device=hidden.device) for axis in zip(*steps, strict=True))
    hidden = hidden[rows_at, steps_at]
    tokens = torch.tensor([t for row in kept for t in row], dtype=torch.long)
    chunk = max(1, CHUNK_ELEMENTS // side.model.vocab_size)
    entropy, logprob = [], []
    for start in range(0, len(steps), chunk):
        logits = side.model.logits(hidden[start : start + chunk])
        e, p = truncated_steps(logits, tokens[start : start + chunk].to(logits.device), settings)
        entropy.append(e.cpu())
        logprob.append(p.cpu())
    lengths = np.cumsum([0, *map(len, kept)])
    flat_entropy, flat_logprob = torch.cat(entropy).tolist(), torch.cat(logprob).tolist()
    return ExampleSamples.from_lists(
        [flat_entropy[a:b] for a, b in zip(lengths[:-1], lengths[1:], strict=True)],
        kept,
        [flat_logprob[a:b] for a, b in zip(lengths[:-1], lengths[1:], strict=True)],
    )
