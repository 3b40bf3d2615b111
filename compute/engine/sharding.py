"""A run split over shard processes (`--shard I/N`): each shard's share of the batches, and the merge's check that
every shard finished."""

from __future__ import annotations

from compute.core import shards
from compute.core.config import RunConfig
from compute.core.inputs import RunError
from compute.core.partial import PartialWork
from compute.core.shards import Shard
from compute.engine.planning import Planned, make_batches


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
