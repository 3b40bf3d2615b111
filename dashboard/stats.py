"""Pure aggregations: per-position frames in, small tables out.

A per-position frame has one row per answer position and some of the columns
named in load.POSITION_COLUMNS plus `category` (0 unshifted, 1 marginal, 2 shifted,
under whichever definition the page chose). Which statistics are averaged comes from
the registry (compute/statistics.py): every one declared with aggregate "mean".
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import polars as pl

from compute import statistics

EXACT_POSITIONS = 32  # positions 0..31 get a bin each; later ones share wider bins
SHARE_COLUMNS = ("share_unshifted", "share_marginal", "share_shifted")
# Registered statistics averaged by the pages: frame column -> (statistic, side or None).
AVERAGED = {column: (stat, side) for column, _, stat, side in statistics.columns() if stat.aggregate == "mean"}


def title(column: str) -> str:
    """A chart title for an averaged column: "KL(aligned ‖ base)", "entropy (aligned)", ..."""
    stat, side = AVERAGED[column]
    return stat.label + (f" ({side})" if side else "")


def _means(frame: pl.DataFrame) -> list[pl.Expr]:
    return [pl.col(column).mean().alias(f"mean_{column}") for column in AVERAGED if column in frame.columns]


def _shares() -> list[pl.Expr]:
    return [(pl.col("category") == i).mean().alias(name) for i, name in enumerate(SHARE_COLUMNS)]


def run_summary(frame: pl.DataFrame) -> dict[str, float]:
    """Shares of the three categories, the mean of every averaged statistic in the frame, and, from the
    teacher-forced entropies, exp(mean entropy) per side and its base / aligned ratio. That last one is
    not the BF paper's branching factor (which samples continuations); it keeps an honest name here."""
    row = frame.select(*_shares(), *_means(frame)).row(0, named=True)
    for side in ("aligned", "base"):
        entropy = row.get(f"mean_entropy_{side}")
        row[f"exp_entropy_{side}"] = math.exp(entropy) if entropy is not None else None
    aligned, base = row["exp_entropy_aligned"], row["exp_entropy_base"]
    row["exp_entropy_ratio"] = base / aligned if aligned and base is not None else None
    return row


def bin_edges(max_t: int) -> np.ndarray:
    """Bin starts: every position below EXACT_POSITIONS, then two bins per doubling (32, 48, 64, 96, ...),
    up to the first start past `max_t` (so every bin has a next start to end before)."""
    edges = list(range(EXACT_POSITIONS))
    low = EXACT_POSITIONS
    while edges[-1] <= max_t:
        edges += [low, low + low // 2]
        low *= 2
    return np.array(edges, dtype=np.int64)


def bin_start(t: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The start of the bin each position falls in."""
    return edges[np.searchsorted(edges, t, side="right") - 1]


def by_position(frame: pl.DataFrame, lengths: pl.Series) -> pl.DataFrame:
    """Per position bin: positions, answers reaching the bin, category shares and the mean of every averaged
    statistic in the frame (mean_kl, mean_entropy_base, ...).

    `frame` needs t and category; `lengths` is the answer length of each example.
    A frame without rows gives a table without rows and the same columns.
    """
    edges = bin_edges(int(frame["t"].max() or 0))
    starts = bin_start(frame["t"].to_numpy(), edges)
    table = (
        frame.with_columns(pl.Series("t_start", starts))
        .group_by("t_start")
        .agg(pl.len().alias("positions"), *_shares(), *_means(frame))
        .sort("t_start")
    )
    sorted_lengths = np.sort(lengths.to_numpy())
    reaching = len(sorted_lengths) - np.searchsorted(sorted_lengths, table["t_start"].to_numpy(), side="right")
    t_end = edges[np.searchsorted(edges, table["t_start"].to_numpy()) + 1] - 1
    table = table.with_columns(
        pl.Series("t_end", t_end, dtype=pl.Int64), pl.Series("answers_reaching", reaching, dtype=pl.Int64)
    )
    means = [f"mean_{column}" for column in AVERAGED if column in frame.columns]
    return table.select("t_start", "t_end", "positions", "answers_reaching", *SHARE_COLUMNS, *means)


def with_types(frame: pl.DataFrame, types: pl.DataFrame) -> pl.DataFrame:
    """Add `type` (and `text`) to a per-position frame with token_id, from the classified token table."""
    return frame.join(types.rename({"id": "token_id"}), on="token_id", how="left").with_columns(
        pl.col("type").fill_null("unknown"), pl.col("text").fill_null("")
    )


def type_shares(frame: pl.DataFrame) -> pl.DataFrame:
    """Per token type: positions, its share of all positions, and its category shares."""
    total = max(frame.height, 1)
    return (
        frame.group_by("type")
        .agg(pl.len().alias("positions"), *_shares())
        .with_columns((pl.col("positions") / total).alias("share_of_positions"))
        .sort("positions", descending=True)
    )


def top_tokens(frame: pl.DataFrame, min_count: int, by: str, n: int = 20) -> pl.DataFrame:
    """The tokens shifted most often (`by`="shifted") or at the highest rate (`by`="rate").

    `frame` needs token_id, text, type, category and row (the position's row in the run). Each token
    keeps `example_row`, its first shifted position, for showing it in context.
    """
    return (
        frame.group_by("token_id")
        .agg(
            pl.col("text").first(),
            pl.col("type").first(),
            pl.len().alias("count"),
            (pl.col("category") == 2).sum().alias("shifted"),
            pl.col("row").filter(pl.col("category") == 2).first().alias("example_row"),
        )
        .with_columns((pl.col("shifted") / pl.col("count")).alias("rate"))
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


def entropy_by_category(frame: pl.DataFrame) -> pl.DataFrame:
    """Mean entropy of each side at unshifted, marginal and shifted positions."""
    return (
        frame.group_by("category")
        .agg(
            pl.len().alias("positions"),
            pl.col("entropy_base").mean().alias("entropy_base"),
            pl.col("entropy_aligned").mean().alias("entropy_aligned"),
        )
        .sort("category")
    )


def per_example(frame: pl.DataFrame) -> pl.DataFrame:
    """Per example (by row number): positions, category shares, and the mean of every averaged statistic."""
    return frame.group_by("example").agg(pl.len().alias("positions"), *_shares(), *_means(frame))


def compare_examples(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Examples of two runs matched by id, with whether the answers are the same token ids.

    Each input has id, example, token_id (a list per example) and the shift shares.
    """
    joined = a.join(b, on="id", how="inner", suffix="_b")
    return joined.select(
        "id",
        pl.col("example").alias("example_a"),
        pl.col("example_b"),
        (pl.col("token_id") == pl.col("token_id_b")).alias("same_answer"),
        pl.col("token_id").list.len().alias("length_a"),
        pl.col("token_id_b").list.len().alias("length_b"),
        pl.col("share_shifted").alias("shifted_a"),
        pl.col("share_shifted_b").alias("shifted_b"),
        (pl.col("share_shifted_b") - pl.col("share_shifted")).alias("shifted_change"),
        pl.col("mean_kl").alias("kl_a"),
        pl.col("mean_kl_b").alias("kl_b"),
    ).sort("id")


def answers(frame: pl.DataFrame) -> pl.DataFrame:
    """Per example: its answer as a list of token ids, shift shares and mean KL."""
    return (
        frame.group_by("example", maintain_order=True)
        .agg(pl.col("token_id"), *_shares(), pl.col("kl").mean().alias("mean_kl"))
        .sort("example")
    )


def answer_fingerprints(examples: pl.DataFrame, token_ids: np.ndarray) -> frozenset[bytes]:
    """A hash of each non-empty answer with its example id: two runs can be compared position by position on
    the examples whose fingerprints both hold. `examples` has id, start and length (rows in `token_ids`)."""
    return frozenset(
        hashlib.blake2b(
            example_id.encode() + b"\0" + token_ids[start : start + length].astype("<i8").tobytes(), digest_size=16
        ).digest()
        for example_id, start, length in examples.select("id", "start", "length").iter_rows()
        if length > 0
    )


def shared_answers(fingerprints: list[frozenset[bytes]]) -> list[tuple[int, int, int]]:
    """(i, j, answers in common) for every pair of runs i < j that share an answer, most in common first."""
    pairs = [
        (i, j, len(fingerprints[i] & fingerprints[j]))
        for i in range(len(fingerprints))
        for j in range(i + 1, len(fingerprints))
    ]
    return sorted((pair for pair in pairs if pair[2] > 0), key=lambda pair: -pair[2])


def category_crosstab(a: pl.DataFrame, b: pl.DataFrame, same: pl.DataFrame) -> pl.DataFrame:
    """Position-level agreement on examples with the same answer: counts of (category a, category b).

    `a` and `b` are per-position frames (example, t, category); `same` pairs example_a with example_b.
    """
    left = a.join(same.select(pl.col("example_a").alias("example"), "example_b"), on="example")
    both = left.join(
        b.select(pl.col("example").alias("example_b"), "t", pl.col("category").alias("category_b")),
        on=["example_b", "t"],
    )
    return both.group_by("category", "category_b").agg(pl.len().alias("positions")).sort("category", "category_b")
