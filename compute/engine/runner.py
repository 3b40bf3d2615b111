"""The Runner: holds the loaded sides and turns batches of planned examples into each pair's ExampleScores
(answered, scored, sampled, judged), with the shared-prefix caches it reuses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from compute.core import side_identity
from compute.core.artifact.records import ExampleScores, SideContext
from compute.core.branching import ExampleSamples
from compute.core.config import RunConfig
from compute.core.rules import SOURCE_OF, Rule
from compute.core.statistics import SIDE_NAMES
from compute.engine.decoding import decode_together
from compute.engine.generate import generate_answers
from compute.engine.log import log
from compute.engine.planning import Planned
from compute.engine.sampling import sample_example, score_samples
from compute.engine.score import ScoreItem, SharedPrefix, common_prefix_length, score_batch
from compute.engine.sides import Side
from compute.engine.vllm_engine import VllmEngine
from compute.tasks import judge


def _is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def forwarded_as(sides: dict[str, Side], artifact_dir: Path) -> dict[str, str]:
    """Each side's name -> the side that is forwarded for it: the first with the same forward key (one identity
    loaded alike gives the same distributions, e.g. a control's cells when both sides share weights)."""
    first: dict[object, str] = {}
    return {
        name: first.setdefault(side_identity.forward_key(side.config, artifact_dir), name)
        for name, side in sides.items()
    }


class Runner:
    """Holds the loaded sides and turns batches of planned examples into ExampleScores, per pair."""

    def __init__(self, config: RunConfig, sides: dict[str, Side], planned: list[Planned], rule: Rule | None = None):
        self.config = config
        self.rule = rule
        self.sides = sides
        self.pairs = config.pairs()
        self.same = forwarded_as(sides, config.out_dir)
        forwarded = {name: sides[name] for name in dict.fromkeys(self.same.values())}
        self.models = {name: side.model for name, side in forwarded.items()}
        self.cell_pairs = tuple(dict.fromkeys((self.same[p.aligned], self.same[p.base]) for p in self.pairs))
        self.prefixes = shared_prefixes(config, forwarded, planned)
        self.generated_tokens = 0
        self.scored_tokens = 0
        self.on_tokens: Callable[[int], None] | None = None  # told each decoding step's new tokens (progress)
        longest = max((len(c) for p in planned for c in p.contexts.values()), default=0)
        budget = max(config.max_new_tokens, config.branching.max_new_tokens if config.branching else 0)
        self.vllm = VllmEngine(config, longest + budget) if config.engine == "vllm" else None

    def close(self) -> None:
        if self.vllm is not None:
            self.vllm.close()

    def process(self, batch: list[Planned]) -> dict[str, list[ExampleScores]]:
        """Answer and score a batch, each pair's ExampleScores by pair name; a batch that runs out of GPU memory
        is split in two and retried."""
        try:
            return self._process(batch)
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not _is_out_of_memory(err) or len(batch) == 1:
                raise
            torch.cuda.empty_cache()
            half = len(batch) // 2
            log(f"out of memory on a batch of {len(batch)}; retrying as {half} + {len(batch) - half}")
            first, second = self.process(batch[:half]), self.process(batch[half:])
            return {name: first[name] + second[name] for name in first}

    def _process(self, batch: list[Planned]) -> dict[str, list[ExampleScores]]:
        aligned = self.sides["aligned"]
        answers = {p.example.index: p.answer for p in batch}
        sources: dict[int, list[int]] = {}
        logprobs: dict[int, np.ndarray] = {}
        to_generate = [p for p in batch if p.answer is None]
        if to_generate:
            for p, (ids, source, decoder_logprobs) in zip(to_generate, self.generate(to_generate), strict=True):
                answers[p.example.index] = ids
                sources[p.example.index] = source
                if decoder_logprobs is not None:
                    logprobs[p.example.index] = np.asarray(decoder_logprobs, dtype=np.float32).reshape(-1, 3)
                self.generated_tokens += len(ids)
        items = [ScoreItem(p.contexts, answers[p.example.index]) for p in batch]
        stats = score_batch(self.models, items, self.config.top_k, self.prefixes, self.cell_pairs)
        results: dict[str, list[ExampleScores]] = {pair.name: [] for pair in self.pairs}
        samples = self.sample(batch)
        for p, item, s in zip(batch, items, stats, strict=True):
            self.scored_tokens += len(item.answer)
            example = p.example
            response = example.response
            if response is None:
                response = aligned.tokenizer.decode(item.answer)
            branching = samples[example.index] if samples else None
            correct = judge(self.config.task, response, example.reference) if self.config.task else -1
            for pair in self.pairs:
                cells = {"aligned": pair.aligned, "base": pair.base}
                results[pair.name].append(
                    ExampleScores(
                        index=example.index,
                        id=example.id,
                        prompt=example.instruction,
                        response=response,
                        token_ids=np.asarray(item.answer, dtype=np.int32),
                        contexts={
                            side: SideContext(np.asarray(p.contexts[cell], dtype=np.int32), p.context_texts[cell])
                            for side, cell in cells.items()
                        },
                        stats=s[(self.same[pair.aligned], self.same[pair.base])],
                        branching=branching,
                        reference=example.reference,
                        correct=correct,
                        source=np.asarray(sources[example.index], dtype=np.int8) if self.rule else None,
                        decoding_logprobs=logprobs.get(example.index),
                    )
                )
        return results

    def generate(self, batch: list[Planned]) -> list[tuple[list[int], list[int], list | None]]:
        """Per example: the answer, which side emitted each token, and the decoder's log-probabilities of each
        (aligned, base, decoded; None for one side alone, decoded by transformers' generate); both sides step
        together under a mixed rule."""
        config, rule = self.config, self.rule
        if rule is None or rule.spec.pure:
            name = rule.name if rule else "aligned"
            contexts = [p.contexts[name] for p in batch]
            if self.vllm is not None:
                answers = self.vllm.generate(self.sides[name], contexts, config.max_new_tokens, config.stop)
                self._count(answers)
            else:
                answers = generate_answers(
                    self.sides[name],
                    contexts,
                    config.max_new_tokens,
                    config.stop,
                    self.prefixes.get(name),
                    self.on_tokens,
                )
            return [(ids, [SOURCE_OF[name]] * len(ids), None) for ids in answers]
        contexts = {name: [p.contexts[name] for p in batch] for name in SIDE_NAMES}
        decoded = decode_together(
            self.sides, contexts, rule, config.max_new_tokens, config.stop, self.prefixes, on_tokens=self.on_tokens
        )
        return [(d.ids, d.source, d.logprobs) for d in decoded]

    def _count(self, answers: list[list[int]]) -> None:
        """Progress for decoding without a per-step hook: the batch's tokens at once."""
        if self.on_tokens is not None:
            self.on_tokens(sum(map(len, answers)))

    def sample(self, batch: list[Planned]) -> dict[int, dict[str, ExampleSamples]] | None:
        """Per example, each side's sampled continuations of its own context, when the config asks for the
        branching factor: drawn by transformers one example at a time, or by vLLM for the whole batch and scored
        in torch."""
        settings, stop = self.config.branching, self.config.stop
        if settings is None:
            return None
        by_side = {}
        for name in SIDE_NAMES:
            side, prefix = self.sides[name], self.prefixes.get(name)
            contexts = [p.contexts[name] for p in batch]
            if self.vllm is None:
                by_side[name] = [
                    sample_example(side, context, settings, stop, p.example.index, prefix)
                    for p, context in zip(batch, contexts, strict=True)
                ]
            else:
                drawn = self.vllm.sample(side, contexts, [p.example.index for p in batch], settings, stop)
                by_side[name] = [
                    score_samples(side, context, rows, settings, stop, prefix)
                    for context, rows in zip(contexts, drawn, strict=True)
                ]
        return {p.example.index: {name: by_side[name][i] for name in SIDE_NAMES} for i, p in enumerate(batch)}


MIN_SHARED_PREFIX = 16  # shorter shared prefixes are not worth a cache


def shared_prefixes(config: RunConfig, sides: dict[str, Side], planned: list[Planned]) -> dict[str, SharedPrefix]:
    """Per side, the KV cache of the context tokens all examples share (an in-context prompt), computed once."""
    prefixes = {}
    if not config.reuse_prefix or not planned:
        return prefixes
    for name, side in sides.items():
        contexts = [p.contexts[name] for p in planned]
        n = common_prefix_length(contexts)
        if n >= MIN_SHARED_PREFIX:
            prefixes[name] = SharedPrefix.build(side.model, contexts[0][:n])
    return prefixes
