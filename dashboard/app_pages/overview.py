"""Overview: all chosen runs side by side."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import charts, load, stats, ui

SUMMARY_COLUMNS = ("category", "kl", "entropy_aligned", "entropy_base")


@st.cache_data(show_spinner=False, max_entries=256)
def summarize(run: load.Run) -> dict[str, object]:
    """One row of the overview table."""
    artifact = run.artifact
    row: dict[str, object] = {"run": run.label, "name": artifact.name}
    for side in load.SIDE_NAMES:
        row[f"{side}_model"] = str(artifact.side_attrs[side].get("model", ""))
        row[f"{side}_template"] = str(artifact.side_attrs[side].get("template", ""))
    row["examples"] = artifact.n_examples
    row["positions"] = artifact.n_positions
    row.update(stats.run_summary(load.positions(run, SUMMARY_COLUMNS)))
    return row


st.header("Overview")
runs = ui.chosen_runs()

table = pl.DataFrame(ui.each_run(runs, summarize))
st.caption(
    "Shift category of a position from the base side's rank of the aligned token: unshifted (rank 0), "
    "marginal (rank 1-2), shifted (rank 3+). Branching factor = exp(mean entropy); the base / aligned ratio "
    "shows how much alignment narrows the next-token distribution."
)
st.dataframe(table, hide_index=True)
ui.downloads(table, "overview")

ui.chart(charts.shares_bars(table), table.select("run", *stats.SHARE_COLUMNS), "shift-shares")
left, right = st.columns(2)
with left:
    kl = table.select("run", "mean_kl")
    ui.chart(charts.grouped_bars(kl, "run", {"mean_kl": "mean KL (nats)"}, "Mean KL(aligned ‖ base)"), kl, "mean-kl")
with right:
    branching = table.select("run", "branching_aligned", "branching_base", "branching_ratio")
    fig = charts.grouped_bars(
        branching, "run", {"branching_aligned": "aligned", "branching_base": "base"}, "Branching factor exp(H)"
    )
    ui.chart(fig, branching, "branching")
