"""Per-example sums: every headline number of a run is a function of these, so its interval is one matrix product.

One row per example and category definition (the aggregates table `example_sums`): the example's positions;
its unshifted / marginal / shifted counts overall, in each position bucket (t 0-9, 10-49, 50+) and for each
token type of the answer token; the sum of every averaged statistic (`sum_kl`, `sum_entropy_base`, ...);
`aligned_top` (positions whose answer token is the aligned side's top choice); top-k agreement counts both
ways; the example's largest KL and JS and the position t of each; for a run decoded by both sides, how many
tokens each side emitted; for a judged run, the verdict. A column the run cannot have (no JS, no decoding,
no task, k below 5 or 10) is null. compute/core/estimates.py turns the table into numbers with intervals.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from compute.core import tables
from compute.core.categories import DEFINITIONS, categories
from compute.core.token_types import TYPES, token_types

CATEGORY_NAMES = ("unshifted", "marginal", "shifted")
BUCKETS = ("t0_9", "t10_49", "t50_")  # column suffixes of the buckets of t: 0-9, 10-49, 50 on
BUCKET_STARTS = np.array([0, 10, 50])
UNKNOWN_TYPE = "unknown"
AGREEMENT_K = (1, 5, 10)  # top-1 of one side within the top-k of the other
BASE_SOURCE = 1  # /positions/source: 0 aligned emitted o_t, 1 base


def type_slug(token_type: str) -> str:
    """'discourse / transition' -> 'discourse': a column-name part for a token type."""
    return token_type.split()[0]


TYPE_SLUGS = tuple(type_slug(t) for t in (*TYPES, UNKNOWN_TYPE))


def _max_and_t(offsets: np.ndarray, t: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per example (rows offsets[e]:offsets[e+1]), the largest value and the t where it is first; nan / -1 for
    an example without positions."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    filled = np.flatnonzero(lengths > 0)
    best = np.full(n, np.nan)
    at = np.full(n, -1, dtype=np.int64)
    if filled.size == 0:
        return best, at
    starts = offsets[:-1][filled]
    best[filled] = np.maximum.reduceat(values, starts)
    example = np.repeat(np.arange(n), lengths)
    hits = np.flatnonzero(values == best[example])
    first_of, index = np.unique(example[hits], return_index=True)
    at[first_of] = t[hits[index]]
    return best, at


def _agreement(top: np.ndarray, other: np.ndarray, k: int) -> np.ndarray | None:
    """Per position, whether `top` (one side's top-1 token) is among the first k of `other`'s top-k ids."""
    if other.shape[1] < k:
        return None
    return (other[:, :k] == top[:, None]).any(axis=1)


def compute(source, category_columns: dict[str, np.ndarray] | None = None, types: pl.DataFrame | None = None):
    """The `example_sums` table of a run (a compute.core.aggregates Source: an Artifact or the writer's file).

    `category_columns` (definition id -> every position's category), where the caller has them, spare deriving
    them again and name the definitions whose rows are made (default: every registered one); `types` (the
    classified token table) likewise."""
    offsets = source.read("examples/offsets")
    n = len(offsets) - 1
    example = source.read("positions/example").astype(np.int64)
    t = source.read("positions/t")
    token_id = source.read("positions/token_id")

    def per_example(values: np.ndarray | None) -> np.ndarray:
        return np.bincount(example, weights=values, minlength=n)

    shared: dict[str, np.ndarray | None] = {"example": np.arange(n, dtype=np.int32)}
    shared["positions"] = np.diff(offsets).astype(np.int64)
    for column, (stat, side) in tables.AVERAGED.items():
        dataset = stat.dataset(side)
        shared[f"sum_{column}"] = per_example(source.read(dataset).astype(np.float64)) if source.has(dataset) else None
    shared["aligned_top"] = per_example((source.read("sides/aligned/rank") == 0).astype(np.float64))
    aligned_ids, base_ids = source.read("sides/aligned/topk_ids"), source.read("sides/base/topk_ids")
    for k in AGREEMENT_K:
        for name, top, other in (("aligned", aligned_ids, base_ids), ("base", base_ids, aligned_ids)):
            agree = _agreement(top[:, 0], other, k) if top.shape[1] else None
            shared[f"{name}_top1_in_top{k}"] = None if agree is None else per_example(agree.astype(np.float64))
    for name in ("kl", "js"):
        if source.has(f"positions/{name}"):
            values = source.read(f"positions/{name}").astype(np.float64)
            shared[f"max_{name}"], shared[f"max_{name}_t"] = _max_and_t(offsets, t, values)
        else:
            shared[f"max_{name}"] = shared[f"max_{name}_t"] = None
    has_source = source.has("positions/source")
    shared["from_base"] = per_example((source.read("positions/source") == BASE_SOURCE) * 1.0) if has_source else None
    shared["correct"] = source.read("examples/correct").astype(np.int8) if source.has("examples/correct") else None

    type_of = _type_of_positions(source, token_id, types)
    bucket = np.searchsorted(BUCKET_STARTS[1:], t, side="right")
    kinds = len(TYPE_SLUGS)
    parts = []
    if category_columns is None:
        category_columns = {definition: categories(source.read, definition) for definition in DEFINITIONS}
    for definition, column in category_columns.items():
        category = column.astype(np.int64)
        # one count per example, bucket (or type) and category: a single bincount each
        by_bucket = np.bincount((example * len(BUCKETS) + bucket) * 3 + category, minlength=n * len(BUCKETS) * 3)
        by_bucket = by_bucket.reshape(n, len(BUCKETS), 3)
        by_type = np.bincount((example * kinds + type_of) * 3 + category, minlength=n * kinds * 3).reshape(n, kinds, 3)
        columns: dict[str, np.ndarray | None] = {}
        blocks = {"": by_bucket.sum(axis=1)}
        blocks |= {f"_{b}": by_bucket[:, i] for i, b in enumerate(BUCKETS)}
        blocks |= {f"_type_{slug}": by_type[:, i] for i, slug in enumerate(TYPE_SLUGS)}
        for suffix, counts in blocks.items():
            if suffix:
                columns[f"positions{suffix}"] = counts.sum(axis=1)
            for c, name in enumerate(CATEGORY_NAMES):
                columns[f"{name}{suffix}"] = counts[:, c]
        series = [pl.Series("definition", [definition] * n, dtype=pl.String)]
        for name, values in {**shared, **columns}.items():
            series.append(_series(name, values, n))
        parts.append(pl.DataFrame(series))
    return pl.concat(parts)


def _series(name: str, values: np.ndarray | None, n: int) -> pl.Series:
    """A column: counts as Int64, sums and maxima as Float64, all null where the run cannot have it."""
    counts = not name.startswith(("sum_", "max_")) or name.endswith("_t")
    if values is None:
        return pl.Series(name, [None] * n, dtype=pl.Int64 if counts else pl.Float64)
    if name in ("example", "correct"):
        return pl.Series(name, values)
    return pl.Series(name, np.rint(values).astype(np.int64) if counts else values)


def _type_of_positions(source, token_id: np.ndarray, types: pl.DataFrame | None) -> np.ndarray:
    """The index in TYPE_SLUGS of each position's answer-token type."""
    if types is None:
        types = token_types(
            pl.DataFrame(
                {"id": source.read("tokens/id"), "text": source.read("tokens/text").tolist()},
                schema_overrides={"id": pl.Int32, "text": pl.String},
            )
        )
    index = {t: i for i, t in enumerate((*TYPES, UNKNOWN_TYPE))}
    ids = types["id"].to_numpy().astype(np.int64)
    codes = np.array([index.get(t, len(TYPES)) for t in types["type"].to_list()], dtype=np.int64)
    lookup = np.full(max(int(ids.max(initial=-1)), int(token_id.max(initial=-1))) + 1, len(TYPES), dtype=np.int64)
    lookup[ids] = codes
    return lookup[token_id]
