"""Compare: two runs over the same examples (matched by id); position by position where the answers are the same."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import charts, interval_views, load, stats, ui
from dashboard.cache import cached
from dashboard.views import overlap


@cached
def answer_table(key: load.RunKey, definition: str) -> pl.DataFrame:
    """Per example: example, id, answer length and hash, positions, shift shares, mean KL (empty answers too)."""
    per = load.table(key, "examples", definition).select("example", "positions", *stats.SHARE_COLUMNS, "mean_kl")
    ids = load.examples(key).select("example", "id")
    return ids.join(load.table(key, "answers"), on="example").join(per, on="example", how="left")


@cached
def comparison(
    a: tuple[load.RunKey, str], b: tuple[load.RunKey, str], definition: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """For runs a and b (key, label): per matched example, shift shares of both runs over the matched examples,
    and the category crosstab over positions of examples whose answers are the same token ids."""
    tables = answer_table(a[0], definition), answer_table(b[0], definition)
    matched = stats.compare_examples(*tables)
    shares = []
    for (_, label), table, column in ((a, tables[0], "example_a"), (b, tables[1], "example_b")):
        pooled = stats.pooled_shares(table.filter(pl.col("example").is_in(matched[column].implode())))
        shares.append(pooled.select(pl.lit(label).alias("run"), pl.all()))
    share_table = pl.concat(shares)
    change = share_table.select(pl.lit("change (B − A)").alias("run"), pl.exclude("run").diff().slice(1, 1))
    names = dict(enumerate(load.CATEGORIES))
    crosstab = load.agreement(a[0], b[0], definition).select(
        pl.col("category").replace_strict(names, return_dtype=pl.String).alias("category_a"),
        pl.col("category_b").replace_strict(names, return_dtype=pl.String),
        "positions",
    )
    return matched, pl.concat([share_table, change]), crosstab


def render() -> None:
    """Draw the page."""
    st.header("Compare two runs")
    runs = ui.chosen_runs(least=2)
    runs, answer_sets = zip(*ui.each_run(runs, lambda run: (run, load.answer_set(run.key))), strict=True)
    if len(runs) < 2:
        st.info("Pick at least 2 readable runs in the sidebar.")
        st.stop()

    keys = tuple(run.key for run in runs)
    comparable = overlap.pairs(keys)
    if comparable:
        st.caption(
            "Runs over the same answers (same example id and answer token ids), whatever their pairs of sides, are "
            "compared position by position on the answers they share. Groups of runs sharing answers:"
        )
        groups = pl.DataFrame(
            [(len(members), n, [runs[i].label for i in members]) for members, n in overlap.groups(keys)],
            schema={"runs": pl.Int64, "answers all hold": pl.Int64, "members": pl.List(pl.String)},
            orient="row",
        )
        st.dataframe(groups, hide_index=True)
        pairs = pl.DataFrame(
            [(runs[i].label, runs[j].label, n, len(answer_sets[i]), len(answer_sets[j])) for i, j, n in comparable],
            schema=["run A", "run B", "answers in common", "answers of A", "answers of B"],
            orient="row",
        )
        with st.expander(f"Pairs of runs with answers in common ({pairs.height})"):
            st.dataframe(pairs, hide_index=True)
    else:
        st.info(
            "No two of the picked runs share an answer (same example id and answer token ids), so none can be compared "
            "position by position; the shift shares below compare the examples they have in common by id."
        )
    first, second = stats.default_pair([run.artifact.side_attrs for run in runs], comparable)
    left, right = st.columns(2)
    with left:
        a = ui.pick_run("Run A", list(runs), key="cmp-a", index=first)
    with right:
        b = ui.pick_run("Run B", list(runs), key="cmp-b", index=second)
    definition = ui.definition()
    ui.definition_caption()
    for run in (a, b):  # each run's own table first, so a run that cannot be read is named
        ui.one_run(run, lambda run: answer_table(run.key, definition))
    matched, shares, crosstab = comparison((a.key, a.label), (b.key, b.label), definition)
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
    answers_of = {run.label: answers for run, answers in zip(runs, answer_sets, strict=True)}
    in_common = len(answers_of[a.label] & answers_of[b.label])
    if in_common:
        st.caption(
            f"A and B share {in_common} answers: {in_common} of A's {len(answers_of[a.label])} and of B's "
            f"{len(answers_of[b.label])} non-empty answers. Positions are compared on those."
        )
    if n_same < matched.height:
        st.caption(
            f"{matched.height - n_same} matched examples have different answers; position-level agreement uses only "
            "the examples whose answers are the same token ids."
        )

    shown = ui.with_short(shares.head(2), list(runs))
    ui.chart(charts.shares_bars(shown, ui.SHORT), shares, "compare-shares")
    interval_views.paired([(b, a)], definition)  # B − A, as the shares table's change row
    if compared == 0 and comparable:  # (with none comparable, the page has said so above)
        st.info("These two runs have no answer in common, so there is no position-by-position agreement to show.")
    elif compared > 0:
        title = "Category under A (rows) and B (columns)"
        fig = charts.heatmap(
            crosstab,
            "category_b",
            "category_a",
            "positions",
            title,
            load.CATEGORIES,
            "category under B",
            "category under A",
        )
        ui.chart(fig, crosstab, "compare-categories")
    st.subheader("Per example")
    ui.downloads(matched, "compare-examples")
    by_change = matched.sort(pl.col("shifted_change").abs(), "example_a", descending=[True, False], nulls_last=True)
    st.caption("Largest change in the shifted share first, then in dataset order (example_a).")
    st.dataframe(by_change, hide_index=True)
