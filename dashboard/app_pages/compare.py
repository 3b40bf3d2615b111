"""Compare: two runs over the same examples (matched by id)."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import charts, load, stats, ui

COLUMNS = ("example", "t", "token_id", "category", "kl")


@st.cache_data(show_spinner=False, max_entries=64)
def answer_table(run: load.Run, definition: str) -> pl.DataFrame:
    """Per example: example, id, answer token ids, shift shares, mean KL (empty answers included)."""
    per = stats.answers(load.positions(run, COLUMNS, definition))
    table = load.examples(run.key).select("example", "id").join(per, on="example", how="left")
    return table.with_columns(pl.col("token_id").fill_null(pl.lit([], dtype=pl.List(pl.Int32))))


@st.cache_data(show_spinner=False, max_entries=64)
def comparison(a: load.Run, b: load.Run, definition: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Per matched example, shift shares of both runs over the matched examples, and the category crosstab
    over positions of examples whose answers are the same token ids."""
    matched = stats.compare_examples(answer_table(a, definition), answer_table(b, definition))
    shares = []
    for run, column in ((a, "example_a"), (b, "example_b")):
        frame = load.positions(run, COLUMNS, definition).filter(pl.col("example").is_in(matched[column].implode()))
        summary = frame.select((pl.col("category") == i).mean().alias(c) for i, c in enumerate(stats.SHARE_COLUMNS))
        shares.append(summary.select(pl.lit(run.label).alias("run"), pl.all()))
    share_table = pl.concat(shares)
    change = share_table.select(pl.lit("change (B − A)").alias("run"), pl.exclude("run").diff().slice(1, 1))
    same = matched.filter(pl.col("same_answer"))
    crosstab = stats.category_crosstab(
        load.positions(a, COLUMNS, definition), load.positions(b, COLUMNS, definition), same
    )
    names = dict(enumerate(load.CATEGORIES))
    crosstab = crosstab.select(
        pl.col("category").replace_strict(names, return_dtype=pl.String).alias("category_a"),
        pl.col("category_b").replace_strict(names, return_dtype=pl.String),
        "positions",
    )
    return matched, pl.concat([share_table, change]), crosstab


st.header("Compare two runs")
runs = ui.chosen_runs(least=2)

left, right = st.columns(2)
with left:
    a = ui.pick_run("Run A", runs, key="cmp-a", index=0)
with right:
    b = ui.pick_run("Run B", runs, key="cmp-b", index=1)
ui.definition_caption()
matched, shares, crosstab = comparison(a, b, ui.definition())
if matched.height == 0:
    st.warning("The two runs have no example ids in common.")
    st.stop()

n_same = int(matched["same_answer"].sum())
compared = int(crosstab["positions"].sum())
agree = int(crosstab.filter(pl.col("category_a") == pl.col("category_b"))["positions"].sum())
cols = st.columns(4)
cols[0].metric("examples matched by id", matched.height)
cols[1].metric("same answer (token ids)", n_same)
cols[2].metric("positions compared", compared)
cols[3].metric("same category", f"{agree / compared:.1%}" if compared else "–")
if n_same < matched.height:
    st.caption(
        f"{matched.height - n_same} matched examples have different answers; position-level agreement uses only "
        "the examples whose answers are the same token ids."
    )

ui.chart(charts.shares_bars(shares.head(2)), shares, "compare-shares")
ui.chart(
    charts.heatmap(
        crosstab, "category_b", "category_a", "positions", "Category under A (rows) and B (columns)", load.CATEGORIES
    ),
    crosstab,
    "compare-categories",
)
st.subheader("Per example")
ui.downloads(matched, "compare-examples")
st.dataframe(matched.sort(pl.col("shifted_change").abs(), descending=True, nulls_last=True), hide_index=True)
