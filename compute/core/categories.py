"""The shift-category definitions: one declaration each, stored and looked up by its stable id.

A definition says which stored datasets it reads and at which rank it puts each position; the category follows
from that rank: 0 unshifted, 1-2 marginal, 3 or more shifted. The writer's stored aggregates, `tds info` and
`tds report`, the dashboard's sidebar and pages all iterate DEFINITIONS. Adding a definition is one `register`
call plus its test: files whose stored tables predate it get its rows computed where they are read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

UNSHIFTED, MARGINAL, SHIFTED = 0, 1, 2  # category codes, as stored in tables' `category` columns
NAMES = ("unshifted", "marginal", "shifted")
MARGINAL_MAX_RANK = 2

Read = Callable[[str], np.ndarray]  # stored dataset path -> its rows


@dataclass(frozen=True)
class CategoryDefinition:
    id: str  # stored in tables' `definition` column and in a stored group's attrs
    label: str  # what a reader sees
    meaning: str  # one sentence, shown as help
    reads: tuple[str, ...]  # the stored datasets `rank` reads
    rank: Callable[[Read], np.ndarray]  # (positions,) rank whose category is the position's
    summary_prefix: str  # summary keys: f"{summary_prefix}_unshifted", ...
    stored_as: tuple[str, ...] = ()  # the labels older files stored this definition under

    def categorise(self, read: Read) -> np.ndarray:
        return shift_category(self.rank(read))


DEFINITIONS: dict[str, CategoryDefinition] = {}


def register(definition: CategoryDefinition) -> str:
    """Add a definition; returns its id."""
    if definition.id in DEFINITIONS:
        raise ValueError(f"category definition {definition.id!r} is registered already")
    DEFINITIONS[definition.id] = definition
    return definition.id


def shift_category(rank: np.ndarray) -> np.ndarray:
    """0 unshifted (rank 0), 1 marginal (rank 1-2), 2 shifted (rank 3+)."""
    return np.where(rank == 0, UNSHIFTED, np.where(rank <= MARGINAL_MAX_RANK, MARGINAL, SHIFTED)).astype(np.int8)


def aligned_top_choice_rank(aligned_topk_ids: np.ndarray, base_topk_ids: np.ndarray) -> np.ndarray:
    """AlignTDS's rank: where the aligned side's top-1 id stands in the base side's stored top-k list
    (0-based), k where it is absent. Both (N, k); returns (N,) int32."""
    n, k = base_topk_ids.shape
    if n == 0 or k == 0:
        return np.full(n, k, dtype=np.int32)
    hits = base_topk_ids == aligned_topk_ids[:, :1]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), k).astype(np.int32)


ANSWER_TOKEN = register(
    CategoryDefinition(
        id="answer_token",
        label="answer token",
        meaning="the base side's rank of the answer token o_t over the full vocabulary",
        reads=("sides/base/rank",),
        rank=lambda read: read("sides/base/rank"),
        summary_prefix="share",
        stored_as=("answer token",),
    )
)
ALIGNED_TOP_CHOICE = register(
    CategoryDefinition(
        id="aligned_top_choice",
        label="aligned top choice (AlignTDS)",
        meaning=(
            "the place of the aligned side's own top-1 token in the base side's stored top-k (absent: shifted), "
            "as AlignTDS computes it; the paper's 5-8 % shifted uses this"
        ),
        reads=("sides/aligned/topk_ids", "sides/base/topk_ids"),
        rank=lambda read: aligned_top_choice_rank(read("sides/aligned/topk_ids"), read("sides/base/topk_ids")),
        summary_prefix="aligntds_share",
        stored_as=("aligned top choice (AlignTDS)",),
    )
)
DEFAULT = ANSWER_TOKEN


def known_id(stored: str) -> str | None:
    """The id of the definition stored as `stored` (its id, or a label an older file used); None if unknown."""
    if stored in DEFINITIONS:
        return stored
    return next((d.id for d in DEFINITIONS.values() if stored in d.stored_as), None)


def categories(read: Read, definition: str) -> np.ndarray:
    """Per-position shift category under the definition with this id."""
    if definition not in DEFINITIONS:
        raise ValueError(f"unknown category definition {definition!r}")
    return DEFINITIONS[definition].categorise(read)


def label(definition: str) -> str:
    return DEFINITIONS[definition].label
