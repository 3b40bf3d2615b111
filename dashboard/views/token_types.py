"""Token types: which kinds of aligned tokens are shifted, and which tokens most."""

from __future__ import annotations

import polars as pl
import streamlit as st

from compute.core import token_types
from dashboard import charts, interval_views, load, stats, tokens, ui
from dashboard.cache import CACHE

CONTEXT_WIDTH = 4  # tokens shown either side of a shifted token


def type_table(run: load.Run, definition: str) -> pl.DataFrame:
    return load.table(run.key, "token_types", definition).select(pl.lit(run.label).alias("run"), pl.all())


def entropy_table(run: load.Run, definition: str) -> pl.DataFrame:
    table = load.table(run.key, "entropy_by_category", definition)
    names = dict(enumerate(load.CATEGORIES))
    return table.select(
        pl.lit(run.label).alias("run"),
        pl.col("category").replace_strict(names, return_dtype=pl.String),
        pl.exclude("category"),
    )


def context_of(run: load.Run, row: int) -> str:
    """The token at `row` among its neighbours in its own answer (read from the file: a few rows)."""
    near = load.window(run, ("token_id", "example"), slice(row - CONTEXT_WIDTH, row + CONTEXT_WIDTH + 1))
    at = min(row, CONTEXT_WIDTH)
    text = load.token_text(run)
    return stats.in_context(near["token_id"].to_numpy(), near["example"].to_numpy(), at, text, CONTEXT_WIDTH)


def most_shifted(run: load.Run, min_count: int, by: str, definition: str) -> pl.DataFrame:
    """The top tokens, each with its first shifted position in context (newlines shown as ↵); once per server for
    each choice (the contexts are read from the file), keyed on the run's file identity."""
    key = (__name__, "most_shifted", run.key, min_count, by, definition)
    return CACHE.get(key, lambda: _most_shifted(run, min_count, by, definition))


def _most_shifted(run: load.Run, min_count: int, by: str, definition: str) -> pl.DataFrame:
    top = stats.top_tokens(load.table(run.key, "token_counts", definition), min_count, by)
    contexts = [tokens.visible(context_of(run, row)) for row in top["example_row"]]
    return top.with_columns(
        pl.col("text").map_elements(tokens.visible, return_dtype=pl.String), pl.Series("in_context", contexts)
    ).drop("example_row")


def render() -> None:
    """Draw the page."""
    st.header("Token types")
    runs = ui.chosen_runs()
    definition = ui.definition()
    ui.definition_caption()

    st.caption(
        "Each aligned token is typed from its own decoded text (stripped, lowercased, against word lists): "
        + ", ".join(token_types.TYPES)
        + ". Multi-token phrases such as “As an AI” count word by word."
    )
    types = ui.with_short(pl.concat(ui.each_run(runs, lambda run: type_table(run, definition))), runs)
    fig = charts.bars(
        types.sort("type"), "type", "share_shifted", ui.SHORT, "Share shifted by token type", "share", True
    )
    ui.chart(fig, types, "token-types")

    st.subheader("Nudging: where the base is uncertain")
    st.caption(
        "Mean entropy of each side at unshifted, marginal and shifted positions: alignment tends to step in "
        "where the base side is unsure."
    )
    nudging = ui.with_short(pl.concat(ui.each_run(runs, lambda run: entropy_table(run, definition))), runs)
    fig = charts.bars(nudging, "category", "entropy_base", ui.SHORT, "Base entropy by shift category", "nats")
    ui.chart(fig, nudging, "nudging")

    st.subheader("Most shifted tokens")
    run = ui.pick_run("Run", runs, key="types-run")
    left, right = st.columns([1, 3])
    min_count = left.slider("Minimum count", 1, 200, 5, key="types-min-count")
    by = right.radio("Rank by", ["shifted", "rate"], horizontal=True, key="types-by")
    top = ui.one_run(run, lambda run: most_shifted(run, min_count, by, definition))
    if top.height == 0:
        st.info(f"No token of {ui.md_escape(run.label)} occurs at least {min_count} times and is ever shifted.")
        interval_views.where_change_concentrates(run)
        st.stop()
    st.caption(
        "in_context: the token's first shifted use, a few tokens either side, the token in ⟦ ⟧; ↵ newline, → tab."
    )
    labelled = top.with_columns(label=pl.col("text") + " #" + pl.col("token_id").cast(pl.String))
    ui.chart(
        charts.grouped_bars(labelled, "label", {by: by}, f"Most shifted tokens by {by}"), top, "most-shifted", True
    )

    interval_views.where_change_concentrates(run)
