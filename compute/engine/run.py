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

This module is the run loop and what it writes; planning.py plans and batches the examples, plan_checks.py
refuses those that cannot run, runner.py answers and scores a batch, calibration.py sets up a [decoding] rule
and sharding.py deals the batches to shards.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from tqdm import tqdm
from transformers.utils.logging import disable_progress_bar

from compute import __version__
from compute.core import aggregates, shards
from compute.core.artifact.records import ExampleScores, RunMeta
from compute.core.artifact.temp_files import left_temp_files
from compute.core.artifact.writer import write_artifact
from compute.core.config import PairPlan, RunConfig
from compute.core.describe import summary_line
from compute.core.inputs import RunError, check_output, select_examples
from compute.core.lock import RunLock
from compute.core.partial import PartialWork
from compute.core.shards import Shard
from compute.core.statistics import SIDE_NAMES
from compute.engine import distributed
from compute.engine.calibration import decoding_rule, decoding_share
from compute.engine.log import log
from compute.engine.plan_checks import check_answer_ids, check_context_windows
from compute.engine.planning import Planned, make_batches, plan
from compute.engine.runner import Runner
from compute.engine.score import check_logits_path
from compute.engine.sharding import check_shards_finished, shard_batches
from compute.engine.sides import Side, load_sides
from compute.engine.vllm_engine import check_engine


def token_table(sides: dict[str, Side], examples: list[ExampleScores]) -> dict[int, str]:
    """Decoded text of every id in the answers and the top-k lists."""
    ids: set[int] = set()
    for example in examples:
        ids.update(example.token_ids.tolist())
        for side in SIDE_NAMES:
            ids.update(example.stats[f"sides/{side}/topk_ids"].ravel().tolist())
    tokenizer = sides["aligned"].tokenizer
    return {i: tokenizer.decode([i]) for i in sorted(ids)}


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
