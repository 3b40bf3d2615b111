"""Compare: two runs over the same examples (matched by id); position by position where the answers are the same."""

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


@st.cache_data(show_spinner=False, max_entries=256)
def fingerprints(run: load.Run) -> frozenset[bytes]:
    """The run's answers, one hash per example (id and answer token ids)."""
    return stats.answer_fingerprints(load.examples(run.key), load.positions(run, ("token_id",))["token_id"].to_numpy())


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
runs, prints = zip(*ui.each_run(runs, lambda run: (run, fingerprints(run))), strict=True)
if len(runs) < 2:
    st.info("Pick at least 2 readable runs in the sidebar.")
    st.stop()

comparable = stats.shared_answers(list(prints))
if comparable:
    st.caption("Runs with answers in common (same example id and answer token ids), comparable position by position:")
    pairs = pl.DataFrame(
        [(runs[i].label, runs[j].label, n) for i, j, n in comparable],
        schema=["run A", "run B", "answers in common"],
        orient="row",
    )
    st.dataframe(pairs, hide_index=True)
else:
    st.info(
        "No two of the picked runs share an answer (same example id and answer token ids), so none can be compared "
        "position by position; the shift shares below compare the examples they have in common by id."
    )
first, second = comparable[0][:2] if comparable else (0, 1)
left, right = st.columns(2)
with left:
    a = ui.pick_run("Run A", list(runs), key="cmp-a", index=first)
with right:
    b = ui.pick_run("Run B", list(runs), key="cmp-b", index=second)
definition = ui.definition()
ui.definition_caption()
for run in (a, b):  # each run's own table first, so a run that cannot be read is named
    ui.one_run(run, lambda run: answer_table(run, definition))
matched, shares, crosstab = comparison(a, b, definition)
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
if compared == 0 and comparable:  # (with none comparable, the page has said so above)
    st.info("These two runs have no answer in common, so there is no position-by-position agreement to show.")
elif compared > 0:
    title = "Category under A (rows) and B (columns)"
    fig = charts.heatmap(crosstab, "category_b", "category_a", "positions", title, load.CATEGORIES)
    ui.chart(fig, crosstab, "compare-categories")
st.subheader("Per example")
ui.downloads(matched, "compare-examples")
st.dataframe(matched.sort(pl.col("shifted_change").abs(), descending=True, nulls_last=True), hide_index=True)
