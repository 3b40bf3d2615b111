"""Branching factor: Yang & Holtzman's BF from sampled continuations, per side and against the position."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import branching, charts, interval_charts, interval_views, load, ui


def render() -> None:
    """Draw the page."""
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
    rows, curves, without = [], [], []
    for run in runs:
        stored = load.branching(run.key)
        if stored is None:
            without.append(run.artifact.name)
            continue
        settings, samples = stored
        rows.append(branching.with_intervals(branching.summary_row(run.label, settings, samples), samples))
        curves.append(branching.curve(run.label, samples))

    if rows:
        table = pl.DataFrame(rows)
        st.dataframe(table, hide_index=True)
        ui.downloads(table, "branching")
        st.caption(interval_views.CAPTION)
        with_data = [run for run in runs if run.label in set(table["run"])]
        table = ui.with_short(table, with_data)
        shown = {"bf_aligned": "aligned", "bf_base": "base"}
        fig = interval_charts.whisker_bars(table, ui.SHORT, shown, "Branching factor per side", horizontal=True)
        ui.chart(fig, table, "branching-bars")
        curve = ui.with_short(pl.concat(curves), with_data)
        curve = curve.with_columns((pl.col(ui.SHORT) + " · " + pl.col("side")).alias("run · side"))
        fig = charts.position_lines(curve, "t", "bf", "run · side", "Branching factor vs position", "BF")
        ui.chart(fig, curve.drop("run · side"), "branching-curve")
    else:
        st.info("None of the picked runs has branching data: make a run with a `[branching]` table (README).")
    if without:
        st.caption(
            ui.md_escape(
                f"No branching data (no [branching] table) in {len(without)} picked runs: {', '.join(without)}."
            )
        )
