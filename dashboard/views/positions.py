"""Positions: shift, KL and entropy against the position t in the answer."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import charts, interval_views, load, stats, ui

MANY_RUNS = 4  # with more runs picked: one chart at a time, lines without markers


def binned(run: load.Run, definition: str) -> pl.DataFrame:
    """The run's per-position-bin table, labelled with the run."""
    return load.table(run.key, "position_bins", definition).select(pl.lit(run.label).alias("run"), pl.all())


def render() -> None:
    """Draw the page."""
    st.header("Positions")
    runs = ui.chosen_runs()

    ui.definition_caption()
    st.caption(
        f"Positions 0..{stats.EXACT_POSITIONS - 1} one by one, then two bins per doubling (t_start..t_end). "
        "answers_reaching counts the answers that reach t_start (at least t_start + 1 tokens long)."
    )
    table = pl.concat(ui.each_run(runs, lambda run: binned(run, ui.definition())), how="diagonal_relaxed")
    table = ui.with_short(table, runs)
    interval_views.positions_caption()
    plots = [
        ("share_shifted", "Share shifted (base rank ≥ 3)", "share", True),
        ("share_marginal", "Share marginal (base rank 1-2)", "share", True),
        *[
            (f"mean_{column}", f"Mean {stats.title(column)}", stat.unit, False)
            for column, (stat, _) in stats.AVERAGED.items()
        ],
        ("answers_reaching", "Answers reaching the position", "answers", False),
    ]
    if len(runs) > MANY_RUNS:
        chosen = st.selectbox("Chart", [plot[1] for plot in plots], key="positions-chart")
        plots = [plot for plot in plots if plot[1] == chosen]
    for column, title, unit, percent in plots:
        if column not in table.columns:
            continue  # no picked run has any position
        part = table.select(
            *dict.fromkeys(("run", ui.SHORT, "t_start", "t_end", "positions", "answers_reaching", column))
        )
        banded = interval_views.band_chart(runs, ui.definition(), column, title, unit, percent, part)
        if banded is not None:
            ui.chart(*banded, f"position-{column}")
            continue
        fig = charts.position_lines(
            part, "t_start", column, ui.SHORT, title, unit, percent, markers=len(runs) <= MANY_RUNS
        )
        ui.chart(fig, part, f"position-{column}")
