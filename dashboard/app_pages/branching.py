"""Branching factor: Yang & Holtzman's BF from sampled continuations, per side and against the position."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import branching, charts, interval_charts, interval_views, load, ui

st.header("Branching factor")
st.caption(
    "As in Yang & Holtzman (How Alignment Shrinks the Generative Horizon): each side samples n continuations of "
    "its own context (temperature, top-p); at every sampled step the entropy of the top-p-truncated, "
    "renormalised distribution is averaged over the samples reaching that position (up to the 95th-percentile "
    "length, while 4 or more remain). log BF is the mean of those entropies, or for outputs over 50 tokens the "
    "mean negative truncated log-likelihood per token; BF = exp(log BF), averaged over examples. "
    "bf_ratio = base / aligned: how many times narrower the aligned side's horizon is. Not the same number as "
    "the overview's exp(mean teacher-forced entropy)."
)
runs = ui.chosen_runs()
rows, curves = [], []
for run in runs:
    stored = load.branching(run.key)
    if stored is None:
        st.caption(ui.md_escape(f"{run.label}: no branching data (the run had no [branching] table)."))
        continue
    settings, samples = stored
    rows.append(branching.with_intervals(branching.summary_row(run.label, settings, samples), samples))
    curves.append(branching.curve(run.label, samples))

if rows:
    table = pl.DataFrame(rows)
    st.dataframe(table, hide_index=True)
    ui.downloads(table, "branching")
    st.caption(interval_views.CAPTION)
    sides = {"bf_aligned": "aligned", "bf_base": "base"}
    fig = interval_charts.whisker_bars(table, "run", sides, "Branching factor per side")
    ui.chart(fig, table, "branching-bars")
    curve = pl.concat(curves).with_columns((pl.col("run") + " · " + pl.col("side")).alias("run · side"))
    plotted = curve.with_columns((pl.col("t") + 1).alias("t + 1"))
    fig = charts.lines(plotted, "t + 1", "bf", "run · side", "Branching factor vs position", "BF", log_x=True)
    ui.chart(fig, curve.drop("run · side"), "branching-curve")
