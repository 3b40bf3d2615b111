"""Intervals on the dashboard's numbers: stored estimates as chart columns and "1.3 % [0.9, 1.8]" text, paired
differences of runs over the same answers, and ranked examples. Pure functions over tables; no Streamlit.

The numbers and their intervals are made in compute/core (estimates.py, intervals.py) and stored with a run
(the aggregates tables `estimates`, `example_sums`, `position_intervals`); dashboard/load.py reads them.
"""

from __future__ import annotations

import polars as pl

from compute.core import estimates, intervals
from compute.core.intervals import Estimate
from compute.core.report import num, pct

HANDFUL = 5  # fewer answers than this reach a bin of t: its band is cut and its curve drawn faint
# The numbers the Overview's interval table shows: number -> (title, percent?).
OVERVIEW = {
    "share_shifted": ("shifted", True),
    "share_marginal": ("marginal", True),
    "share_shifted_t0_9": ("shifted t 0-9", True),
    "share_shifted_t10_49": ("shifted t 10-49", True),
    "share_shifted_t50_": ("shifted t 50+", True),
    "mean_kl": ("mean KL", False),
    "mean_js": ("mean JS", False),
    "kl_q50": ("KL q50", False),
    "kl_q90": ("KL q90", False),
    "kl_q99": ("KL q99", False),
    "kl_max": ("KL max", False),
    "js_q50": ("JS q50", False),
    "js_q90": ("JS q90", False),
    "js_q99": ("JS q99", False),
    "js_max": ("JS max", False),
    "exp_entropy_aligned": ("exp(H) aligned", False),
    "exp_entropy_base": ("exp(H) base", False),
    "exp_entropy_ratio": ("exp(H) base / aligned", False),
    "answer_is_aligned_top": ("answer is aligned top", True),
    "aligned_top1_in_top1": ("aligned top-1 = base top-1", True),
    "aligned_top1_in_top5": ("aligned top-1 in base top-5", True),
    "aligned_top1_in_top10": ("aligned top-1 in base top-10", True),
    "base_top1_in_top5": ("base top-1 in aligned top-5", True),
    "base_top1_in_top10": ("base top-1 in aligned top-10", True),
    "accuracy": ("accuracy (over problems)", True),
}


def found(table: pl.DataFrame) -> dict[str, Estimate]:
    """One definition's `estimates` rows as number -> Estimate."""
    return estimates.from_table(table)


def text(e: Estimate | None, percent: bool) -> str:
    return pct(e) if percent else num(e, 3)


def text_row(label: str, numbers: dict[str, Estimate], shown: dict[str, tuple[str, bool]] = OVERVIEW) -> dict:
    """A table row: the run, then "value [low, high]" for every number it has of `shown`."""
    row = {"run": label}
    for name, (title, percent) in shown.items():
        if name in numbers:
            row[title] = text(numbers[name], percent)
    return row


def bounds_row(label: str, numbers: dict[str, Estimate], names: list[str]) -> dict:
    """A chart row: the run, then each number with `<name>_low` and `<name>_high` (None where undefined)."""
    row: dict[str, object] = {"run": label}
    for name in names:
        e = numbers.get(name)
        for suffix, value in (("", e and e.value), ("_low", e and e.low), ("_high", e and e.high)):
            row[name + suffix] = None if value is None or value != value else value
    return row


def shared_rows(answers_a: pl.DataFrame, answers_b: pl.DataFrame) -> pl.DataFrame:
    """The examples two runs answer with the same token ids (equal `hash`): example_a, example_b."""
    return (
        answers_a.select(pl.col("example").alias("example_a"), "hash")
        .join(answers_b.select(pl.col("example").alias("example_b"), "hash"), on="hash")
        .select("example_a", "example_b")
        .sort("example_a")
    )


def paired(
    sums_a: pl.DataFrame, sums_b: pl.DataFrame, matched: pl.DataFrame, resamples: int = estimates.RESAMPLES
) -> dict[str, Estimate]:
    """Every number, a - b, over the answers both hold (`matched`: example_a, example_b), with a paired interval
    (the same resamples of those answers for both runs)."""
    a = matched.select(pl.col("example_a").alias("example")).join(sums_a, on="example", how="left")
    b = matched.select(pl.col("example_b").alias("example")).join(sums_b, on="example", how="left")
    weights = intervals.resample_weights(matched.height, resamples, estimates.SEED)
    return estimates.paired_differences(a, b, weights)


PAIRED = {  # number -> (title, percent?): the paired differences Compare and Stages show
    "share_shifted": ("shifted", True),
    "share_marginal": ("marginal", True),
    "share_shifted_t0_9": ("shifted t 0-9", True),
    "mean_kl": ("mean KL", False),
    "mean_js": ("mean JS", False),
    "exp_entropy_ratio": ("exp(H) base / aligned", False),
}


def difference_rows(differences: dict[str, Estimate], shown: dict[str, tuple[str, bool]] = PAIRED) -> pl.DataFrame:
    """One row per number: the difference with its interval, and whether the interval excludes 0."""
    rows = []
    for name, (title, percent) in shown.items():
        e = differences.get(name)
        if e is None:
            continue
        scale = 100 if percent else 1
        unit = " pp" if percent else ""
        digits = 1 if percent else 3
        rows.append(
            {
                "number": title,
                "difference (a - b)": f"{scale * e.value:+.{digits}f}{unit}",
                "95 % interval": f"[{scale * e.low:+.{digits}f}, {scale * e.high:+.{digits}f}]",
                "shown": "yes" if e.low > 0 or e.high < 0 else "no: includes 0",
            }
        )
    return pl.DataFrame(
        rows,
        schema={"number": pl.String, "difference (a - b)": pl.String, "95 % interval": pl.String, "shown": pl.String},
    )


def band_frame(table: pl.DataFrame, number: str, label: str) -> pl.DataFrame:
    """One number of a run's `position_intervals` (one definition): run, t_start, value, low, high, answers, and
    `few`: fewer than HANDFUL answers reach the bin."""
    return (
        table.filter(pl.col("number") == number)
        .select(pl.lit(label).alias("run"), "t_start", "value", "low", "high", "answers")
        .with_columns((pl.col("answers") < HANDFUL).alias("few"))
        .sort("t_start")
    )
