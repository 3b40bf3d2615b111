"""Where the change between the sides concentrates: forking tokens, entropy change by base-entropy decile,
base-favoured tokens, and the examples that diverge most.

Forking tokens after Wang et al. 2025 ("Beyond the 80/20 Rule"): a side's highest-entropy 20 % of positions;
how much of one side's set the other side shares says whether tuning moved the uncertain positions or kept
them. Base-favoured tokens: the answer tokens the base side prefers most over the aligned side, summed
log P_base(o_t) - log P_aligned(o_t) per token id. numpy and polars only.
"""

from __future__ import annotations

import numpy as np
import polars as pl

FORKING_SHARE = 0.2
DECILES = 10


def forking_overlap(entropy_aligned: np.ndarray, entropy_base: np.ndarray, share: float = FORKING_SHARE) -> dict:
    """The share of each side's highest-entropy `share` of positions that the other side also has among its own."""
    if entropy_aligned.size == 0:
        return {"aligned_in_base": float("nan"), "base_in_aligned": float("nan"), "share": share}
    top_a = entropy_aligned >= np.quantile(entropy_aligned, 1 - share)
    top_b = entropy_base >= np.quantile(entropy_base, 1 - share)
    both = float((top_a & top_b).sum())
    return {"aligned_in_base": both / top_a.sum(), "base_in_aligned": both / top_b.sum(), "share": share}


def entropy_change_by_decile(entropy_aligned: np.ndarray, entropy_base: np.ndarray) -> pl.DataFrame:
    """Per decile of the base side's entropy: positions, the mean entropy of each side, and the mean change
    (aligned - base): does tuning change the uncertain positions or the confident ones?"""
    if entropy_base.size == 0:
        columns = ("mean_entropy_base", "mean_entropy_aligned", "mean_change")
        return pl.DataFrame(schema={"decile": pl.Int64, "positions": pl.Int64} | dict.fromkeys(columns, pl.Float64))
    edges = np.quantile(entropy_base, np.linspace(0, 1, DECILES + 1)[1:-1])
    decile = np.searchsorted(edges, entropy_base, side="right")
    return (
        pl.DataFrame({"decile": decile, "base": entropy_base, "aligned": entropy_aligned}, strict=False)
        .group_by("decile")
        .agg(
            pl.len().alias("positions"),
            pl.col("base").mean().alias("mean_entropy_base"),
            pl.col("aligned").mean().alias("mean_entropy_aligned"),
            (pl.col("aligned") - pl.col("base")).mean().alias("mean_change"),
        )
        .sort("decile")
        .with_columns(pl.col("decile").cast(pl.Int64))
    )


def base_favoured(
    token_id: np.ndarray, logprob_aligned: np.ndarray, logprob_base: np.ndarray, texts: dict[int, str], top: int = 20
) -> pl.DataFrame:
    """The answer tokens the base side prefers most over the aligned side: per token id, positions, the summed
    and mean log P_base - log P_aligned; the `top` largest positive sums."""
    frame = pl.DataFrame(
        {"token_id": token_id, "favour": logprob_base.astype(np.float64) - logprob_aligned.astype(np.float64)}
    )
    table = (
        frame.group_by("token_id")
        .agg(pl.len().alias("positions"), pl.col("favour").sum().alias("sum"), pl.col("favour").mean().alias("mean"))
        .filter(pl.col("sum") > 0)
        .sort(["sum", "token_id"], descending=[True, False])
        .head(top)
    )
    text = [texts.get(int(i), "") for i in table["token_id"].to_list()]
    return table.with_columns(pl.Series("text", text, dtype=pl.String)).select(
        "token_id", "text", "positions", "sum", "mean"
    )


def ranked_examples(sums: pl.DataFrame, ids: list[str], by: str = "max_kl", top: int | None = None) -> pl.DataFrame:
    """Examples ranked by one column of their per-example sums (one definition's rows): max_kl, max_js,
    mean_kl, mean_js or shifted; with the example's id, positions, shifted count, the max and mean KL and JS,
    and `t`, the position of its largest KL (its token view opens there)."""
    frame = sums.select(
        "example",
        pl.Series("id", [ids[e] for e in sums["example"].to_list()], dtype=pl.String),
        "positions",
        "shifted",
        "max_kl",
        (pl.col("sum_kl") / pl.col("positions")).alias("mean_kl"),
        "max_js",
        (pl.col("sum_js") / pl.col("positions")).alias("mean_js"),
        pl.col("max_kl_t").alias("t"),
    ).filter(pl.col("positions") > 0)
    ranked = frame.sort([by, "example"], descending=[True, False], nulls_last=True)
    return ranked if top is None else ranked.head(top)
