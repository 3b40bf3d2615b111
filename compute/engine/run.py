"""One run: config in, one checked artifact out.

Everything that can be checked without a model (config, dataset, output
place) is checked first. Then the sides load, the examples are split over the
ranks (one rank without torchrun), batched longest first, answered (greedy, or
from the file), scored, and saved batch by batch as partial work; the main
rank merges the batches in dataset order into out_dir/NAME.h5.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    branching_attrs,
    has_branching,
    open_artifact,
    read_branching,
    summarize,
    write_artifact,
)
from compute.core.branching import ExampleSamples, run_branching_factor
from compute.core.config import CROSS_SAMPLING, ConfigError, RunConfig
from compute.core.datasets import Example, load_examples
from compute.core.errors import UserError
from compute.core.lock import RunLock
from compute.core.partial import PartialWork
from compute.core.rules import SIDE_OF, SOURCE_OF, Rule
from compute.core.shards import Shard
from compute.engine import distributed
from compute.engine.decoding import decode_together, js_threshold
from compute.engine.generate import generate_answers
from compute.engine.sampling import sample_example
from compute.engine.score import ScoreItem, SharedPrefix, check_logits_path, common_prefix_length, score_batch
from compute.engine.sides import Side, load_sides
from compute.engine.vllm_engine import VllmEngine, check_engine
from compute.tasks import judge

SIDES = ("aligned", "base")


class RunError(UserError):
    """A run that cannot start or finish; one line for the user."""


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


def output_path(config: RunConfig) -> Path:
    return config.out_dir / f"{config.name}.h5"


def check_output(config: RunConfig, overwrite: bool) -> Path:
    """The artifact's final path; refuse an existing one and an out_dir that cannot be written."""
    path = output_path(config)
    if path.is_dir():
        raise RunError(f"{path}: is a folder, not an artifact; move it away to write the run")
    if path.exists() and not overwrite:
        raise RunError(f"{path}: an artifact of that name exists (use --overwrite to replace it)")
    try:
        config.out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=config.out_dir):
            pass
    except OSError as err:
        raise RunError(f"out_dir {config.out_dir} is not writable: {err.strerror or err}") from None
    return path


def select_examples(config: RunConfig, limit: int | None) -> list[Example]:
    examples = load_examples(config.dataset)
    if config.task and all(e.reference is None for e in examples):
        raise ConfigError(
            f"{config.path}: task {config.task!r} judges responses against a `reference` field, "
            f"and no example of {config.dataset} has one"
        )
    if config.decoding and any(e.response is not None for e in examples):
        raise ConfigError(
            f"{config.path}: [decoding] decides how answers are generated, and {config.dataset} gives answers "
            "(drop their `response` or the [decoding] table)"
        )
    return examples[:limit] if limit else examples


def plan(sides: dict[str, Side], examples: list[Example], max_new_tokens: int) -> dict[int, Planned]:
    """Render contexts and tokenise file answers once (alone, no special tokens) for both sides."""
    tokenizer = sides["aligned"].tokenizer
    planned = {}
    for example in examples:
        texts = {name: sides[name].render(example.instruction) for name in SIDES}
        contexts = {name: sides[name].context_ids(texts[name]) for name in SIDES}
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


class Runner:
    """Holds the loaded sides and turns batches of planned examples into ExampleScores."""

    def __init__(self, config: RunConfig, sides: dict[str, Side], planned: list[Planned], rule: Rule | None = None):
        self.config = config
        self.rule = rule
        self.sides = sides
        self.models = {name: side.model for name, side in sides.items()}
        self.prefixes = shared_prefixes(config, sides, planned)
        self.generated_tokens = 0
        self.scored_tokens = 0
        self.on_tokens: Callable[[int], None] | None = None  # told each decoding step's new tokens (progress)
        longest = max((len(c) for p in planned for c in p.contexts.values()), default=0)
        self.vllm = VllmEngine(config, longest + config.max_new_tokens) if config.engine == "vllm" else None

    def close(self) -> None:
        if self.vllm is not None:
            self.vllm.close()

    def process(self, batch: list[Planned]) -> list[ExampleScores]:
        """Answer and score a batch; a batch that runs out of GPU memory is split in two and retried."""
        try:
            return self._process(batch)
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not _is_out_of_memory(err) or len(batch) == 1:
                raise
            torch.cuda.empty_cache()
            half = len(batch) // 2
            log(f"out of memory on a batch of {len(batch)}; retrying as {half} + {len(batch) - half}")
            return self.process(batch[:half]) + self.process(batch[half:])

    def _process(self, batch: list[Planned]) -> list[ExampleScores]:
        aligned = self.sides["aligned"]
        answers = {p.example.index: p.answer for p in batch}
        sources: dict[int, list[int]] = {}
        to_generate = [p for p in batch if p.answer is None]
        if to_generate:
            generated, generated_sources = self.generate(to_generate)
            for p, ids, source in zip(to_generate, generated, generated_sources, strict=True):
                answers[p.example.index] = ids
                sources[p.example.index] = source
                self.generated_tokens += len(ids)
        items = [ScoreItem(p.contexts, answers[p.example.index]) for p in batch]
        stats = score_batch(self.models, items, self.config.top_k, self.prefixes)
        results = []
        for p, item, s in zip(batch, items, stats, strict=True):
            self.scored_tokens += len(item.answer)
            example = p.example
            response = example.response
            if response is None:
                response = aligned.tokenizer.decode(item.answer)
            results.append(
                ExampleScores(
                    index=example.index,
                    id=example.id,
                    prompt=example.instruction,
                    response=response,
                    token_ids=np.asarray(item.answer, dtype=np.int32),
                    contexts={
                        name: SideContext(np.asarray(p.contexts[name], dtype=np.int32), p.context_texts[name])
                        for name in SIDES
                    },
                    stats=s,
                    branching=self.sample(p),
                    reference=example.reference,
                    correct=judge(self.config.task, response, example.reference) if self.config.task else -1,
                    source=np.asarray(sources[example.index], dtype=np.int8) if self.rule else None,
                )
            )
        return results

    def generate(self, batch: list[Planned]) -> tuple[list[list[int]], list[list[int]]]:
        """Greedy answers and which side emitted each token: one side alone (transformers' generate), or both
        sides stepping together under a mixed rule."""
        config, rule = self.config, self.rule
        if rule is None or rule.counted_side is None:
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
            return answers, [[SOURCE_OF[name]] * len(ids) for ids in answers]
        contexts = {name: [p.contexts[name] for p in batch] for name in SIDES}
        decoded = decode_together(self.sides, contexts, rule, config.max_new_tokens, config.stop, self.prefixes)
        self._count([d.ids for d in decoded])
        return [d.ids for d in decoded], [d.source for d in decoded]

    def _count(self, answers: list[list[int]]) -> None:
        """Progress for decoding without a per-step hook: the batch's tokens at once."""
        if self.on_tokens is not None:
            self.on_tokens(sum(map(len, answers)))

    def sample(self, planned: Planned) -> dict[str, ExampleSamples] | None:
        """Each side's sampled continuations of its own context, when the config asks for the branching factor."""
        settings = self.config.branching
        if settings is None:
            return None
        return {
            name: sample_example(
                side, planned.contexts[name], settings, self.config.stop, planned.example.index, self.prefixes.get(name)
            )
            for name, side in self.sides.items()
        }


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
    """The [decoding] rule; for cross-sampling its JS threshold: the one the finished batches were decoded with
    (a resumed run), or calibrated on `planned` (every example of the run)."""
    if config.decoding is None:
        return None
    if config.decoding.rule != CROSS_SAMPLING:
        return Rule.from_config(config.decoding)
    recorded = work.recorded("decoding_js_threshold")
    if recorded is not None:
        return Rule.from_config(config.decoding, float(recorded))
    receiving = Rule(SIDE_OF[1 - SOURCE_OF[config.decoding.insert]])
    prefixes = shared_prefixes(config, sides, planned)
    by_index = {p.example.index: p for p in planned}
    js = []
    batches = make_batches(list(by_index), by_index, config)
    for batch in tqdm(batches, desc=f"calibrate ({receiving.name} alone)", unit="batch"):
        contexts = {name: [by_index[i].contexts[name] for i in batch] for name in SIDES}
        decoded = decode_together(
            sides, contexts, receiving, config.max_new_tokens, config.stop, prefixes, with_js=True
        )
        js += [d.js for d in decoded]
    threshold = js_threshold(js, config.decoding.budget)
    log(
        f"cross-sampling: JS threshold {threshold:.4f} nats, the {1 - config.decoding.budget:.0%} quantile over "
        f"{sum(map(len, js))} positions the {receiving.name} side decoded alone"
    )
    return Rule.from_config(config.decoding, threshold)


def decoding_share(rule: Rule, examples: list[ExampleScores]) -> float:
    """The share of positions emitted by the nudging or inserted side."""
    sources = np.concatenate([e.source for e in examples] or [np.zeros(0, dtype=np.int8)])
    return float(np.mean(sources == rule.counted_side)) if len(sources) else float("nan")


def run_meta(config: RunConfig, sides: dict[str, Side], fingerprint: str) -> RunMeta:
    return RunMeta(
        name=config.name,
        top_k=config.top_k,
        side_attrs={name: side.artifact_attrs(config.out_dir) for name, side in sides.items()},
        attrs={
            "tool_version": __version__,
            "dataset": config.dataset.name,
            "config": config.text,
            "config_fingerprint": fingerprint,
            **({"tags": ",".join(config.tags)} if config.tags else {}),
            **({"short_name": config.short_name} if config.short_name else {}),
            **({"task": config.task} if config.task else {}),
        },
        branching=dataclasses.asdict(config.branching) if config.branching else None,
    )


def run(
    config: RunConfig, limit: int | None = None, overwrite: bool = False, shard: Shard | None = None
) -> Path | None:
    """Run the whole job; returns the artifact's path on the main rank (None on the others and for a shard)."""
    started = time.perf_counter()
    examples = select_examples(config, limit)
    final_path = check_output(config, overwrite)
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
        meta = run_meta(config, sides, fingerprint)
        if any(p.answer is None for p in every.values()):
            meta.attrs["engine"] = config.engine
        work = PartialWork(config.out_dir / f".{config.name}.partial", fingerprint)
        if ranks.is_main:
            work.open(log)
            if shard:
                shards.record(work.folder, shard.count, len(examples))
        distributed.barrier(ranks)
        done = work.done()
        rule = decoding_rule(config, sides, [every[e.index] for e in examples], work)
        if rule is not None:
            meta.attrs.update(rule.attrs())
        distributed.barrier(ranks)  # every rank has read the same finished work before any rank adds to it
        wanted = {e.index for e in examples}
        if done & wanted and ranks.is_main:
            log(f"resuming: {len(done & wanted)} of {len(examples)} examples already scored")
        planned = {i: p for i, p in every.items() if i not in done}
        runner = Runner(config, sides, list(every.values()), rule)
        if shard:
            batches = [[planned[i] for i in batch] for batch in shard_batches(config, every, done, shard)]
            _score_share(runner, batches, work, meta, sides, ranks)
            log(
                f"shard {shard}: scored {sum(map(len, batches))} examples; once all {shard.count} shards are done, "
                f"the same command without --shard writes {final_path}"
            )
            return None
        check_shards_finished(config, work, every, wanted - done)
        mine = distributed.balanced_share({i: p.cost for i, p in planned.items()}, ranks)
        batches = [[planned[i] for i in batch] for batch in make_batches(mine, planned, config)]
        _score_share(runner, batches, work, meta, sides, ranks)
        distributed.barrier(ranks)
        if not ranks.is_main:
            return None
        scored, token_text = work.collect()
        missing = wanted - set(scored)
        if missing:
            raise RunError(f"{len(missing)} examples have no scores in {work.folder}; run again to finish them")
        ordered = [scored[e.index] for e in examples]
        if rule is not None and rule.counted_side is not None:
            meta.attrs["decoding_share"] = decoding_share(rule, ordered)
        write_artifact(final_path, meta, ordered, token_text, overwrite, extra=aggregates.write_into)
        work.remove()
        _print_summary(final_path, time.perf_counter() - started)
        return final_path
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
    stale = [*config.out_dir.glob(f".{config.name}.h5.*.tmp"), *config.out_dir.glob(f".{config.name}.partial/.*.tmp")]
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
    work: PartialWork,
    meta: RunMeta,
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
            results = runner.process(batch)
            work.save(meta, results, token_table(sides, results))
            elapsed = max(time.perf_counter() - started, 1e-9)
            generated += sum(1 for p in batch if p.answer is None)
            gen_bar.set_postfix(examples=f"{generated}/{to_generate}")
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{runner.scored_tokens / elapsed:.1f}")
    if ranks.world_size > 1:
        log(f"rank {ranks.rank} of {ranks.world_size}: scored {n_examples} examples in {len(batches)} batches")


def _print_summary(path: Path, seconds: float) -> None:
    s = summarize(open_artifact(path))
    print(
        f"wrote {path}: {s['examples']} examples, {s['positions']} positions; "
        f"unshifted {s['share_unshifted']:.1%}, marginal {s['share_marginal']:.1%}, shifted {s['share_shifted']:.1%}; "
        f"mean KL {s['mean_kl']:.3f} nats"
        + (f", mean JS {s['mean_js']:.3f} nats" if "mean_js" in s else "")
        + (f"; accuracy {s['accuracy']:.1%} of {s['judged']} judged" if "accuracy" in s else "")
        + f"; {seconds:.1f} s"
    )


def describe_decoding(attrs: dict[str, Any]) -> str:
    """One line on how the answers were decoded (root attrs decoding, decoding_*)."""
    rule = attrs["decoding"]
    if rule == "nudging":
        return (
            f"decoding: nudging (gamma {attrs['decoding_threshold']}): "
            f"{attrs['decoding_share']:.1%} of tokens from the aligned side"
        )
    if rule == CROSS_SAMPLING:
        return (
            f"decoding: cross-sampling, {attrs['decoding_insert']} tokens inserted, budget "
            f"{attrs['decoding_budget']:.0%}, JS threshold {attrs['decoding_js_threshold']:.4f}: "
            f"{attrs['decoding_share']:.1%} of tokens inserted"
        )
    return f"decoding: the {rule} side alone"


SIDE_ASPECTS = {  # what a side is made of -> the side attributes that hold it
    "model": ("model", "gguf_file", "revision"),
    "adapter": ("adapter", "adapter_revision"),
    "template": ("template", "template_text"),
    "system prompt": ("system",),
}


def side_differences(side_attrs: dict[str, dict[str, Any]]) -> str:
    """Which of model, adapter, template and system prompt differ between the two sides ("nothing" if none)."""
    aligned, base = side_attrs["aligned"], side_attrs["base"]
    found = [aspect for aspect, keys in SIDE_ASPECTS.items() if any(aligned.get(k) != base.get(k) for k in keys)]
    return ", ".join(found) or "nothing"


def describe(path: Path) -> str:
    """What `compute info` prints: the run, its sides and its summary, after the format check."""
    artifact = open_artifact(path)
    s = summarize(artifact)
    lines = [f"{path}: {artifact.name} (format v{artifact.attrs['format_version']}, top_k {artifact.top_k})"]
    lines.append(f"  created {artifact.attrs['created_utc']}, tool {artifact.attrs.get('tool_version', '?')}")
    for name in SIDES:
        a: dict[str, Any] = artifact.side_attrs[name]
        keys = ("gguf_file", "revision", "adapter", "adapter_revision")
        extra = ", ".join(
            [f"{k} {a[k]}" for k in keys if k in a] + ([f"system {a['system']!r}"] if "system" in a else [])
        )
        lines.append(
            f"  {name}: {a['model']} | template {a['template']!r} | {a['dtype']}" + (f" | {extra}" if extra else "")
        )
    lines.append(f"  the sides differ in: {side_differences(artifact.side_attrs)}")
    lines.append(f"  {s['examples']} examples, {s['positions']} positions")
    lines.append(
        f"  answer token: unshifted {s['share_unshifted']:.1%}  marginal {s['share_marginal']:.1%}  "
        f"shifted {s['share_shifted']:.1%}"
    )
    lines.append(
        f"  aligned top choice (AlignTDS): unshifted {s['aligntds_share_unshifted']:.1%}  "
        f"marginal {s['aligntds_share_marginal']:.1%}  shifted {s['aligntds_share_shifted']:.1%}; "
        f"answer token = aligned top choice at {s['answer_is_aligned_top']:.1%}"
    )
    means = [
        f"{stat.label}{f' {side}' if side else ''} {s['mean_' + stat.column(side)]:.4f}"
        for _, stat, side in artifact.statistics()
        if stat.aggregate == "mean"
    ]
    lines.append("  means (nats): " + "; ".join(means))
    if "decoding" in artifact.attrs:
        lines.append("  " + describe_decoding(artifact.attrs))
    if "engine" in artifact.attrs:
        lines.append(f"  answers decoded by {artifact.attrs['engine']}")
    if "accuracy" in s:
        lines.append(
            f"  task {artifact.attrs.get('task', '?')}: accuracy {s['accuracy']:.1%} "
            f"({s['judged']} of {s['examples']} examples judged)"
        )
    if has_branching(artifact):
        bf = {name: run_branching_factor(read_branching(artifact, name)) for name in SIDES}
        n = branching_attrs(artifact, "aligned")["samples"]
        lines.append(
            f"  branching factor (BF paper, {n} samples per example): aligned {bf['aligned']:.2f}, "
            f"base {bf['base']:.2f}; base / aligned {bf['base'] / bf['aligned']:.2f}"
        )
    return "\n".join(lines)
