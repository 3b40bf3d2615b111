"""What the picked runs show, in two sentences computed from their tables (the Overview's opening lines).

Pure functions; no Streamlit here.
"""

from __future__ import annotations

import polars as pl

EARLY = 10  # positions 0..EARLY-1 count as the start of the answer


def early_and_later(bins: pl.DataFrame) -> tuple[float | None, float | None]:
    """Shifted share of positions t < EARLY and of those after, from a run's position_bins table (t_start,
    positions, share_shifted); None where the run has no such positions."""
    shares = []
    for part in (bins.filter(pl.col("t_start") < EARLY), bins.filter(pl.col("t_start") >= EARLY)):
        n = part["positions"].sum()
        shares.append(float((part["share_shifted"] * part["positions"]).sum() / n) if n else None)
    return shares[0], shares[1]


def _pct(share: float) -> str:
    return f"{share:.1%}"


def sentences(runs: pl.DataFrame, token: str = "the answer token") -> str:
    """Two sentences on `runs` (one row per run: name, share_unshifted, share_shifted, early, later; early and
    later may be null): how many positions keep the base side's top token and how few are shifted, then whether
    the shifts crowd the start of the answer. `token` is the token the categories rank (the definition's)."""
    runs = runs.filter(pl.col("share_shifted").is_not_null() & pl.col("share_shifted").is_finite())  # has positions
    n = runs.height
    if n == 0:
        return ""
    low, high = runs.sort("share_shifted").row(0, named=True), runs.sort("share_shifted").row(-1, named=True)
    kept = runs["share_unshifted"]
    unshifted = f"unshifted ({token} is the base side's top choice too)"
    shifted = "shifted (3rd or lower under the base side)"
    if n == 1:
        first = (
            f"In {low['name']}, {_pct(kept[0])} of the answer positions are {unshifted} and "
            f"{_pct(low['share_shifted'])} {shifted}."
        )
    else:
        first = (
            f"In the {n} runs shown, {_pct(kept.min())} to {_pct(kept.max())} of the answer positions are "
            f"{unshifted} and {_pct(low['share_shifted'])} ({low['name']}) to {_pct(high['share_shifted'])} "
            f"({high['name']}) {shifted}."
        )
    timed = runs.filter(pl.col("early").is_not_null() & pl.col("later").is_not_null())
    if timed.height == 0:
        return first
    earlier = timed.filter(pl.col("early") > pl.col("later"))
    medians = f"{_pct(timed['early'].median())} against {_pct(timed['later'].median())}"
    if earlier.height * 2 > timed.height:
        second = (
            f"The shifts crowd the start of the answer: in {earlier.height} of {timed.height} runs positions "
            f"0-{EARLY - 1} are shifted more often than later ones (medians over the runs: {medians})."
        )
    else:
        second = (
            f"The shifts do not crowd the start of the answer: positions 0-{EARLY - 1} are shifted more often than "
            f"later ones in only {earlier.height} of {timed.height} runs."
        )
    return f"{first} {second}"
