"""What pages compute from a run's aggregate tables: chart titles, the most shifted tokens, two runs side by side.

No Streamlit here. The tables themselves are made in compute/core/tables.py (from positions), stored with the run
by compute/core/aggregates.py, and read by dashboard/load.py.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from compute.core.tables import AVERAGED, EXACT_POSITIONS, SHARE_COLUMNS

__all__ = ["AVERAGED", "EXACT_POSITIONS", "SHARE_COLUMNS"]


def title(column: str) -> str:
    """A chart title for an averaged column: "KL(aligned ‖ base)", "entropy (aligned)", ..."""
    stat, side = AVERAGED[column]
    return stat.label + (f" ({side})" if side else "")


def top_tokens(counts: pl.DataFrame, min_count: int, by: str, n: int = 20) -> pl.DataFrame:
    """The tokens shifted most often (`by`="shifted") or at the highest rate (`by`="rate").

    `counts` is a run's token_counts table (token_id, text, type, count, shifted, example_row: the row of the
    token's first shifted position, for showing it in context)."""
    return (
        counts.with_columns((pl.col("shifted") / pl.col("count")).alias("rate"))
        .filter((pl.col("count") >= min_count) & (pl.col("shifted") > 0))
        .sort([by, "count", "token_id"], descending=[True, True, False])
        .head(n)
    )


def in_context(token_ids: np.ndarray, example: np.ndarray, row: int, text: dict[int, str], width: int = 4) -> str:
    """Tokens around position `row` of its own example, the token itself in ⟦ ⟧, as raw text."""
    lo, hi = max(0, row - width), min(len(token_ids), row + width + 1)
    parts = []
    for r in range(lo, hi):
        if example[r] != example[row]:
            continue
        piece = text.get(int(token_ids[r]), f"⟨{int(token_ids[r])}⟩")
        parts.append(f"⟦{piece}⟧" if r == row else piece)
    return "".join(parts)


def compare_examples(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Examples of two runs matched by id, with whether the answers are the same token ids.

    Each input has id, example, length, hash (of id and answer ids), positions, share_shifted and mean_kl."""
    joined = a.join(b, on="id", how="inner", suffix="_b")
    return joined.select(
        "id",
        pl.col("example").alias("example_a"),
        pl.col("example_b"),
        (pl.col("hash") == pl.col("hash_b")).alias("same_answer"),
        pl.col("length").alias("length_a"),
        pl.col("length_b"),
        pl.col("share_shifted").alias("shifted_a"),
        pl.col("share_shifted_b").alias("shifted_b"),
        (pl.col("share_shifted_b") - pl.col("share_shifted")).alias("shifted_change"),
        pl.col("mean_kl").alias("kl_a"),
        pl.col("mean_kl_b").alias("kl_b"),
    ).sort("id")


def pooled_shares(per_example: pl.DataFrame) -> pl.DataFrame:
    """Category shares over all positions of the given examples (each example's shares weighted by its
    positions); one row, nulls where the examples have no positions."""
    total = pl.col("positions").sum()
    return per_example.select(
        pl.when(total > 0).then((pl.col(c) * pl.col("positions")).sum() / total).alias(c) for c in SHARE_COLUMNS
    )


def shared_answers(fingerprints: list[frozenset[str]]) -> list[tuple[int, int, int]]:
    """(i, j, answers in common) for every pair of runs i < j that share an answer, most in common first."""
    pairs = [
        (i, j, len(fingerprints[i] & fingerprints[j]))
        for i in range(len(fingerprints))
        for j in range(i + 1, len(fingerprints))
    ]
    return sorted((pair for pair in pairs if pair[2] > 0), key=lambda pair: -pair[2])


def default_pair(sides: list[object], comparable: list[tuple[int, int, int]]) -> tuple[int, int]:
    """The two runs Compare opens on, given each run's sides and `comparable` (shared_answers): the pair with
    the most answers in common whose sides differ (two runs of one pair over the same answers agree by
    construction), else the first two runs that are not such a pair, else the first two."""
    for i, j, _ in comparable:
        if sides[i] != sides[j]:
            return i, j
    trivial = {(i, j) for i, j, _ in comparable}
    n = len(sides)
    return next(((i, j) for i in range(n) for j in range(i + 1, n) if (i, j) not in trivial), (0, 1))


def answer_groups(answer_sets: list[frozenset[str]]) -> list[tuple[tuple[int, ...], int]]:
    """Groups of two or more runs with answers in common: (runs, answers every one of them holds), for each set
    of runs that holds some answer together and no other run; the group covering the most run-answers first."""
    holders: dict[str, list[int]] = {}
    for i, answers in enumerate(answer_sets):
        for answer in answers:
            holders.setdefault(answer, []).append(i)
    together = {tuple(runs) for runs in holders.values() if len(runs) > 1}
    groups = [(runs, len(frozenset.intersection(*(answer_sets[i] for i in runs)))) for runs in together]
    return sorted(groups, key=lambda group: (-len(group[0]) * group[1], -len(group[0]), group[0]))
