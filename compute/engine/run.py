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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers.utils.logging import disable_progress_bar

from compute import __version__
from compute.core import aggregates, rules
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
from compute.core.config import ConfigError, RunConfig
from compute.core.datasets import Example, load_examples
from compute.core.errors import UserError
from compute.core.lock import RunLock
from compute.core.partial import PartialWork
from compute.core.rules import SOURCE_OF, Rule
from compute.engine import distributed
from compute.engine.decoding import decode_together
from compute.engine.generate import generate_answers
from compute.engine.sampling import sample_example
from compute.engine.score import ScoreItem, SharedPrefix, check_logits_path, common_prefix_length, score_batch
from compute.engine.sides import Side, load_sides
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
            answers = generate_answers(
                self.sides[name], contexts, config.max_new_tokens, config.stop, self.prefixes.get(name)
            )
            return [(ids, [SOURCE_OF[name]] * len(ids), None) for ids in answers]
        contexts = {name: [p.contexts[name] for p in batch] for name in SIDES}
        decoded = decode_together(self.sides, contexts, rule, config.max_new_tokens, config.stop, self.prefixes)
        return [(d.ids, d.source, d.logprobs) for d in decoded]

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
            **({"task": config.task} if config.task else {}),
        },
        branching=dataclasses.asdict(config.branching) if config.branching else None,
    )


def run(config: RunConfig, limit: int | None = None, overwrite: bool = False) -> Path | None:
    """Run the whole job; returns the artifact's path on the main rank (None on the others)."""
    started = time.perf_counter()
    examples = select_examples(config, limit)
    final_path = check_output(config, overwrite)
    fingerprint = config.fingerprint(config.dataset.read_bytes())
    ranks = distributed.setup()
    if not ranks.is_main:
        disable_progress_bar()  # the model-loading bars, once (from the main rank)
    lock = RunLock(config.out_dir / f".{config.name}.lock", config.name)
    try:
        if ranks.is_main:
            lock.acquire()
            remove_stale_temp_files(config)
        sides = load_sides(config)
        for name, side in sides.items():
            check_logits_path(side.model, name)
        every = plan(sides, examples, config.max_new_tokens)
        check_context_windows(config, sides, every)
        check_answer_ids(config, sides, every)
        meta = run_meta(config, sides, fingerprint)
        work = PartialWork(config.out_dir / f".{config.name}.partial", fingerprint)
        if ranks.is_main:
            work.open(log)
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
        mine = distributed.balanced_share({i: p.cost for i, p in planned.items()}, ranks)
        runner = Runner(config, sides, [planned[i] for i in mine], rule)
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
        lock.release()
        distributed.teardown(ranks)


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
    gen_bar = tqdm(total=to_generate, desc="generate", unit="ex", disable=quiet or not to_generate, position=1)
    bar = tqdm(total=n_examples, desc="score", unit="ex", disable=quiet, position=0)
    started = time.perf_counter()
    with gen_bar, bar:  # closed on the way out of an interrupt too, so the next line starts fresh
        for batch in batches:
            results = runner.process(batch)
            work.save(meta, results, token_table(sides, results))
            elapsed = max(time.perf_counter() - started, 1e-9)
            gen_bar.update(sum(1 for p in batch if p.answer is None))
            gen_bar.set_postfix(tok_s=f"{runner.generated_tokens / elapsed:.1f}")
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


def describe(path: Path) -> str:
    """What `compute info` prints: the run, its sides and its summary, after the format check."""
    artifact = open_artifact(path)
    s = summarize(artifact)
    lines = [f"{path}: {artifact.name} (format v{artifact.attrs['format_version']}, top_k {artifact.top_k})"]
    lines.append(f"  created {artifact.attrs['created_utc']}, tool {artifact.attrs.get('tool_version', '?')}")
    for name in SIDES:
        a: dict[str, Any] = artifact.side_attrs[name]
        extra = ", ".join(f"{k} {a[k]}" for k in ("gguf_file", "revision", "adapter", "adapter_revision") if k in a)
        lines.append(
            f"  {name}: {a['model']} | template {a['template']!r} | {a['dtype']}" + (f" | {extra}" if extra else "")
        )
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
        lines.append("  " + rules.describe(artifact.attrs))
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
