"""Per-position columns -> the small tables the dashboard draws (per run, per position bin, per token type, ...).

Pure functions over polars frames, numpy and polars only: `compute aggregate` and the writer store their
results with a run (compute/core/aggregates.py), and the dashboard computes the same tables with the same functions
where a run stores none. Which statistics are averaged comes from the registry (compute/core/statistics.py): every
one declared with aggregate "mean". Frames carry a `category` column: 0 unshifted, 1 marginal, 2 shifted.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import polars as pl

from compute.core import statistics
from compute.core.categories import SHIFTED

EXACT_POSITIONS = 32  # positions 0..31 get a bin each; later ones share wider bins
SHARE_COLUMNS = ("share_unshifted", "share_marginal", "share_shifted")
# Registered statistics averaged by the pages: frame column -> (statistic, side or None).
AVERAGED = {column: (stat, side) for column, _, stat, side in statistics.columns() if stat.aggregate == "mean"}


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
        .sort(["positions", "type"], descending=[True, False])  # ties in a fixed order: the same file every time
    )


def token_counts(frame: pl.DataFrame) -> pl.DataFrame:
    """Per token id: its text and type, how often it is the answer token, how often shifted, and `example_row`,
    the row of its first shifted position (null if never). `frame` needs token_id, text, type, category, row."""
    return (
        frame.group_by("token_id")
        .agg(
            pl.col("text").first(),
            pl.col("type").first(),
            pl.len().alias("count"),
            (pl.col("category") == SHIFTED).sum().alias("shifted"),
            pl.col("row").filter(pl.col("category") == SHIFTED).min().alias("example_row"),
        )
        .sort("token_id")
    )


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
    return frame.group_by("example").agg(pl.len().alias("positions"), *_shares(), *_means(frame)).sort("example")


def answer_hashes(ids: list[str], offsets: np.ndarray, token_ids: np.ndarray) -> list[str]:
    """A hash of each example's id and answer token ids (hex): two runs hold the same answer for an example
    exactly where these agree. `offsets` (E+1) bound each example's rows in `token_ids`."""
    return [
        hashlib.blake2b(
            example_id.encode() + b"\0" + token_ids[start:end].astype("<i8").tobytes(), digest_size=16
        ).hexdigest()
        for example_id, start, end in zip(ids, offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
    ]
