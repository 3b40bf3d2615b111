"""The BF paper's branching factor as dashboard tables (pure functions over stored samples; no Streamlit)."""

from __future__ import annotations

import polars as pl

from compute.core import intervals
from compute.core.branching import ExampleSamples, branching_curve, branching_estimates, branching_factor
from compute.core.statistics import SIDE_NAMES


def summary_row(run: str, settings: dict[str, object], samples: dict[str, list[ExampleSamples]]) -> dict[str, object]:
    """One run: the sampling settings, BF per side (mean over examples of exp(log BF)) and base / aligned."""
    row: dict[str, object] = {"run": run, **{key: settings.get(key) for key in ("samples", "temperature", "top_p")}}
    for side in SIDE_NAMES:
        values = pl.Series([branching_factor(e) for e in samples[side]], dtype=pl.Float64).fill_nan(None)
        row[f"bf_{side}"] = values.mean()
        row[f"examples_{side}"] = values.count()  # examples with a BF (4 or more samples reach position 0)
    aligned, base = row["bf_aligned"], row["bf_base"]
    row["bf_ratio"] = base / aligned if aligned and base is not None else None
    return row


def curve(run: str, samples: dict[str, list[ExampleSamples]]) -> pl.DataFrame:
    """BF vs position per side: run, side, t, bf (mean over examples of exp(mean truncated entropy at t))."""
    parts = []
    for side in SIDE_NAMES:
        values = branching_curve(samples[side])
        parts.append(
            pl.DataFrame(
                {"run": run, "side": side, "t": range(len(values)), "bf": values},
                schema={"run": pl.String, "side": pl.String, "t": pl.Int64, "bf": pl.Float64},
            )
        )
    return pl.concat(parts)


def with_intervals(row: dict[str, object], samples: dict[str, list[ExampleSamples]]) -> dict[str, object]:
    """The summary row with `<bf column>_low` / `_high`: a 95 % interval over resampled examples (both sides
    on the same resamples)."""
    n = len(samples["aligned"])
    found = branching_estimates(samples["aligned"], samples["base"], intervals.resample_weights(n))
    for name, e in found.items():
        row[f"{name}_low"], row[f"{name}_high"] = e.low, e.high
    return row
