"""One run: config in, checked artifacts out (one per pair of sides it compares).

Everything that can be checked without a model (config, dataset, output
place) is checked first. Then the sides load, the examples are split over the
ranks (one rank without torchrun), batched longest first, answered (greedy, or
from the file), scored, and saved batch by batch as partial work; the main
rank merges the batches in dataset order into out_dir/NAME.h5.

A run may forward more than two sides (cells) over one answer set and write
several pairs of them (the template control, config `control`): each cell runs
once per batch, sides with identical configs once between them, and each pair
gets its own partial work and its own artifact, in today's pair format.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers.utils.logging import disable_progress_bar

from compute import __version__
from compute.core import aggregates, shards
from compute.core.artifact import (
    ExampleScores,
    RunMeta,
    SideContext,
    left_temp_files,
    write_artifact,
)
from compute.core.branching import ExampleSamples
from compute.core.config import PairPlan, RunConfig
from compute.core.datasets import Example
from compute.core.describe import summary_line
from compute.core.inputs import RunError, check_output, select_examples
from compute.core.lock import RunLock
from compute.core.partial import PartialWork
from compute.core.rules import SOURCE_OF, Rule
from compute.core.shards import Shard
from compute.engine import distributed
from compute.engine.decoding import decode_together
from compute.engine.generate import generate_answers
from compute.engine.sampling import sample_example, score_samples
from compute.engine.score import ScoreItem, SharedPrefix, check_logits_path, common_prefix_length, score_batch
from compute.engine.sides import Side, load_sides
from compute.engine.vllm_engine import VllmEngine, check_engine
from compute.tasks import judge

SIDES = ("aligned", "base")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Planned:
    """An example ready to run: each side's context, and the answer ids when the file gives them."""

    example: Example
    contexts: dict[str, list[int]]
    context_texts: dict[str, str]
    answer: list[int] | None
    cost: int  # the longest side's sequence length, generation budget included


def plan(sides: dict[str, Side], examples: list[Example], max_new_tokens: int) -> dict[int, Planned]:
    """Render contexts and tokenise file answers once (alone, no special tokens) for every side."""
    tokenizer = sides["aligned"].tokenizer
    planned = {}
    for example in examples:
        texts = {name: side.render(example.instruction) for name, side in sides.items()}
        contexts = {name: side.context_ids(texts[name]) for name, side in sides.items()}
        answer = None
        if example.answer_ids is not None:
            answer = list(example.answer_ids)
        elif example.response is not None:
            answer = tokenizer(example.response, add_special_tokens=False).input_ids
        longest_context = max(len(c) for c in contexts.values())
        cost = longest_context + (len(answer) if answer is not None else max_new_tokens)
        planned[example.index] = Planned(example, contexts, texts, answer, cost)
    return planned


def make_batches(indices: list[int], planned: dict[int, Planned], config: RunConfig) -> list[list[int]]:
    """Longest first; at most batch_size examples and, when set, max_batch_tokens padded tokens."""
    ordered = sorted(indices, key=lambda i: (-planned[i].cost, i))
    batches: list[list[int]] = []
    for index in ordered:
        if batches:
            batch = batches[-1]
            width = planned[batch[0]].cost  # the longest, as the batch is sorted
            fits_tokens = config.max_batch_tokens is None or width * (len(batch) + 1) <= config.max_batch_tokens
            if len(batch) < config.batch_size and fits_tokens:
                batch.append(index)
                continue
        batches.append([index])
    return batches


def _is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def forwarded_as(sides: dict[str, Side]) -> dict[str, str]:
    """Each side's name -> the side that is forwarded for it: the first side with an identical config (the same
    weights, adapter and template give the same distributions, e.g. a control's cells when both sides share weights)."""
    first: dict[object, str] = {}
    return {name: first.setdefault(side.config, name) for name, side in sides.items()}


class Runner:
    """Holds the loaded sides and turns batches of planned examples into ExampleScores, per pair."""

    def __init__(self, config: RunConfig, sides: dict[str, Side], planned: list[Planned], rule: Rule | None = None):
        self.config = config
        self.rule = rule
        self.sides = sides
        self.pairs = config.pairs()
        self.same = forwarded_as(sides)
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
        contexts = {name: [p.contexts[name] for p in batch] for name in SIDES}
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
        for name in SIDES:
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
        return {p.example.index: {name: by_side[name][i] for name in SIDES} for i, p in enumerate(batch)}


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


def token_table(sides: dict[str, Side], examples: list[ExampleScores]) -> dict[int, str]:
    """Decoded text of every id in the answers and the top-k lists."""
    ids: set[int] = set()
    for example in examples:
        ids.update(example.token_ids.tolist())
        for side in SIDES:
            ids.update(example.stats[f"sides/{side}/topk_ids"].ravel().tolist())
    tokenizer = sides["aligned"].tokenizer
    return {i: tokenizer.decode([i]) for i in sorted(ids)}


def decoding_rule(config: RunConfig, sides: dict[str, Side], planned: list[Planned], work: PartialWork) -> Rule | None:
    """The [decoding] rule with its parameters; a rule with a calibration gets the values the finished batches were
    decoded with (a resumed run), or calibrates them on `planned` (every example of the run)."""
    if config.decoding is None:
        return None
    rule = Rule(config.decoding.rule, dict(config.decoding.params))
    calibration = rule.spec.calibration
    if calibration is None:
        return rule
    recorded = {name: work.recorded(f"decoding_{name}") for name in calibration.adds}
    if all(value is not None for value in recorded.values()):
        return rule.with_params(**{name: float(value) for name, value in recorded.items()})
    alone = Rule(calibration.alone(rule.params))
    prefixes = shared_prefixes(config, sides, planned)
    by_index = {p.example.index: p for p in planned}
    js = []
    batches = make_batches(list(by_index), by_index, config)
    for batch in tqdm(batches, desc=f"calibrate ({alone.name} alone)", unit="batch"):
        contexts = {name: [by_index[i].contexts[name] for i in batch] for name in SIDES}
        decoded = decode_together(sides, contexts, alone, config.max_new_tokens, config.stop, prefixes, with_js=True)
        js += [d.js for d in decoded]
    added, line = calibration.compute(rule.params, js)
    log(line)
    return rule.with_params(**added)


def decoding_share(rule: Rule, examples: list[ExampleScores]) -> float:
    """The share of positions whose source is the one the rule counts (the nudging or inserted side, ...)."""
    sources = np.concatenate([e.source for e in examples] or [np.zeros(0, dtype=np.int8)])
    return float(np.mean(sources == rule.counted_side)) if len(sources) else float("nan")


def control_attrs(config: RunConfig, pair: PairPlan) -> dict[str, str]:
    """What ties a control's pair artifacts together: the control, the run's name, and the pair's role."""
    return {"control": config.control or "", "control_name": config.name, "control_role": pair.role or ""}


def run_meta(config: RunConfig, sides: dict[str, Side], fingerprint: str, pair: PairPlan) -> RunMeta:
    """A pair artifact's attributes; a control's pairs also record the control's name and the pair's role."""
    cells = {"aligned": pair.aligned, "base": pair.base}
    return RunMeta(
        name=pair.name,
        top_k=config.top_k,
        side_attrs={side: sides[cell].artifact_attrs(config.out_dir) for side, cell in cells.items()},
        attrs={
            "tool_version": __version__,
            "dataset": config.dataset.name,
            "config": config.text,
            "config_fingerprint": fingerprint,
            **({"tags": ",".join(config.tags)} if config.tags else {}),
            **({"short_name": config.short_name} if config.short_name else {}),
            **({"task": config.task} if config.task else {}),
            **(control_attrs(config, pair) if pair.role else {}),
        },
        branching=dataclasses.asdict(config.branching) if config.branching else None,
    )


def run(
    config: RunConfig, limit: int | None = None, overwrite: bool = False, shard: Shard | None = None
) -> Path | None:
    """Run the whole job; returns the (first) artifact's path on the main rank (None on the others and for a
    shard)."""
    paths = run_pairs(config, limit, overwrite, shard)
    return next(iter(paths.values())) if paths else None


def run_pairs(
    config: RunConfig, limit: int | None = None, overwrite: bool = False, shard: Shard | None = None
) -> dict[str, Path]:
    """Run the whole job; every artifact's path by pair name on the main rank (empty on the others and for a
    shard)."""
    started = time.perf_counter()
    examples = select_examples(config, limit)
    final_paths = check_output(config, overwrite)
    fingerprint = config.fingerprint(config.dataset.read_bytes())
    ranks = distributed.setup()
    if shard and ranks.world_size > 1:
        raise RunError(f"--shard {shard}: a shard is one process; start it without torchrun")
    if not ranks.is_main:
        disable_progress_bar()  # the model-loading bars, once (from the main rank)
    main_lock = RunLock(config.out_dir / f".{config.name}.lock", config.name)
    lock = RunLock(shard.lock_path(config.out_dir, config.name), f"{config.name} shard {shard}") if shard else main_lock
    runner: Runner | None = None
    try:
        if ranks.is_main:
            lock.acquire()
            if shard:
                shards.check_idle(main_lock.path, config.name)
            else:
                shards.check_no_live_shards(config.out_dir, config.name)
                remove_stale_temp_files(config)
        check_engine(config, log)
        sides = load_sides(config)
        for name, side in sides.items():
            check_logits_path(side.model, name)
        every = plan(sides, examples, config.max_new_tokens)
        check_context_windows(config, sides, every)
        check_answer_ids(config, sides, every)
        pairs = config.pairs()
        metas = {pair.name: run_meta(config, sides, fingerprint, pair) for pair in pairs}
        if config.branching or any(p.answer is None for p in every.values()):  # something was decoded
            for meta in metas.values():
                meta.attrs["engine"] = config.engine
        works = {pair.name: PartialWork(config.out_dir / f".{pair.name}.partial", fingerprint) for pair in pairs}
        if ranks.is_main:
            for work in works.values():
                work.open(log)
                if shard:
                    shards.record(work.folder, shard.count, len(examples))
        distributed.barrier(ranks)
        done = set.intersection(*(work.done() for work in works.values()))
        rule = decoding_rule(config, sides, [every[e.index] for e in examples], works[pairs[0].name])
        if rule is not None:
            for meta in metas.values():
                meta.attrs.update(rule.attrs())
        distributed.barrier(ranks)  # every rank has read the same finished work before any rank adds to it
        wanted = {e.index for e in examples}
        if done & wanted and ranks.is_main:
            log(f"resuming: {len(done & wanted)} of {len(examples)} examples already scored")
        planned = {i: p for i, p in every.items() if i not in done}
        runner = Runner(config, sides, list(every.values()), rule)
        if shard:
            batches = [[planned[i] for i in batch] for batch in shard_batches(config, every, done, shard)]
            _score_share(runner, batches, works, metas, sides, ranks)
            log(
                f"shard {shard}: scored {sum(map(len, batches))} examples; once all {shard.count} shards are done, "
                f"the same command without --shard writes {', '.join(map(str, final_paths.values()))}"
            )
            return {}
        check_shards_finished(config, works[pairs[0].name], every, wanted - done)
        mine = distributed.balanced_share({i: p.cost for i, p in planned.items()}, ranks)
        batches = [[planned[i] for i in batch] for batch in make_batches(mine, planned, config)]
        _score_share(runner, batches, works, metas, sides, ranks)
        distributed.barrier(ranks)
        if not ranks.is_main:
            return {}
        collected = {}
        for name, work in works.items():
            scored, token_text = work.collect()
            missing = wanted - set(scored)
            if missing:
                raise RunError(f"{len(missing)} examples have no scores in {work.folder}; run again to finish them")
            collected[name] = ([scored[e.index] for e in examples], token_text)
        for name, (ordered, token_text) in collected.items():
            if rule is not None and rule.counted_side is not None:
                metas[name].attrs["decoding_share"] = decoding_share(rule, ordered)
            write_artifact(final_paths[name], metas[name], ordered, token_text, overwrite, extra=aggregates.write_into)
        for work in works.values():
            work.remove()
        for path in final_paths.values():
            print(summary_line(path, time.perf_counter() - started))
        return final_paths
    finally:
        if runner is not None:
            runner.close()
        lock.release()
        distributed.teardown(ranks)


def shard_batches(config: RunConfig, every: dict[int, Planned], done: set[int], shard: Shard) -> list[list[int]]:
    """The shard's share of the run's batches (made over every example, as one process makes them), less the
    examples already scored."""
    batches = make_batches(list(every), every, config)
    share = shards.deal([every[b[0]].cost * len(b) for b in batches], shard.count)[shard.index - 1]
    return [todo for todo in ([i for i in batches[b] if i not in done] for b in share) if todo]


def check_shards_finished(config: RunConfig, work: PartialWork, every: dict[int, Planned], missing: set[int]) -> None:
    """When shards wrote the partial work, the run without --shard only merges: name the shards not finished."""
    record = shards.recorded(work.folder)
    if record is None or not missing:
        return
    count, n_examples = record
    if n_examples != len(every):
        raise RunError(
            f"{work.folder}: its shards ran over {n_examples} examples, this run has {len(every)}: "
            "use the shards' --limit"
        )
    lacking = {}
    for index in range(1, count + 1):
        todo = sum(map(len, shard_batches(config, every, set(every) - missing, Shard(index, count))))
        if todo:
            lacking[index] = todo
    named = ", ".join(f"{i}/{count} ({n} examples)" for i, n in lacking.items())
    raise RunError(
        f"{config.name}: shard{'s' if len(lacking) > 1 else ''} {named} not finished: run "
        f"`tds run {config.path} --shard I/{count}` for each, then this command again"
    )


def remove_stale_temp_files(config: RunConfig) -> None:
    """Temp files a killed write of this run left behind (its lock is held, so none is being written)."""
    stale = [
        path
        for pair in config.pairs()
        for path in (
            *left_temp_files(config.out_dir, f"{pair.name}.h5"),
            *left_temp_files(config.out_dir / f".{pair.name}.partial"),
        )
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log(f"removed {len(stale)} temp files an interrupted write left in {config.out_dir}")


def check_context_windows(config: RunConfig, sides: dict[str, Side], planned: dict[int, Planned]) -> None:
    """Refuse, before any scoring, an example longer than a side's context window (generation budget included)."""
    for name, side in sides.items():
        window = side.model.context_window
        if not window:
            continue
        for p in planned.values():
            length = len(p.contexts[name]) + (len(p.answer) if p.answer is not None else config.max_new_tokens)
            if length > window:
                budget = "answer" if p.answer is not None else f"max_new_tokens {config.max_new_tokens}"
                raise RunError(
                    f"{config.dataset}: example {p.example.id!r}: the {name} side's context and {budget} are "
                    f"{length} tokens, more than the context window of {side.config.model} ({window})"
                )


def check_answer_ids(config: RunConfig, sides: dict[str, Side], planned: dict[int, Planned]) -> None:
    """Answer ids taken from another artifact must exist in this pair's vocabulary (same tokenizer family)."""
    vocabulary = len(sides["aligned"].tokenizer)
    for p in planned.values():
        if p.example.answer_ids and max(p.example.answer_ids) >= vocabulary:
            raise RunError(
                f"{config.dataset}: example {p.example.id!r}: answer token id {max(p.example.answer_ids)} is outside "
                f"the vocabulary of {config.aligned.model} ({vocabulary} tokens); the artifact's pair used another "
                f"tokenizer"
            )


def _score_share(
    runner: Runner,
    batches: list[list[Planned]],
    works: dict[str, PartialWork],
    metas: dict[str, RunMeta],
    sides: dict[str, Side],
    ranks: distributed.Ranks,
) -> None:
    n_examples = sum(len(b) for b in batches)
    quiet = not ranks.is_main
    to_generate = sum(1 for b in batches for p in b if p.answer is None)
    gen_bar = tqdm(desc="generate", unit="tok", disable=quiet or not to_generate, position=1)  # moves every step
    runner.on_tokens = gen_bar.update
    generated = 0
    bar = tqdm(total=n_examples, desc="score", unit="ex", disable=quiet, position=0)
    started = time.perf_counter()
    with gen_bar, bar:  # closed on the way out of an interrupt too, so the next line starts fresh
        for batch in batches:
            for name, results in runner.process(batch).items():
                works[name].save(metas[name], results, token_table(sides, results))
            elapsed = max(time.perf_counter() - started, 1e-9)
            generated += sum(1 for p in batch if p.answer is None)
            gen_bar.set_postfix(examples=f"{generated}/{to_generate}")
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{runner.scored_tokens / elapsed:.1f}")
    if ranks.world_size > 1:
        log(f"rank {ranks.rank} of {ranks.world_size}: scored {n_examples} examples in {len(batches)} batches")
