"""Examples: one answer token by token, and both sides' top-k at a chosen position."""

from __future__ import annotations

import numpy as np
import polars as pl
import streamlit as st

from dashboard import charts, interval_views, load, stats, tokens, ui
from dashboard import render as markup
from dashboard.cache import cached

SORTS = {"shifted share": ("share_shifted", True), "mean KL": ("mean_kl", True), "dataset order": ("example", False)}
MAX_OPTIONS = 1000
EMITTED_BY = "emitting side"  # the colouring offered for a run decoded by both sides together


def divergences() -> dict:
    """The per-pair statistics a token can be coloured by (KL, JS), from the registry as it is now (read at every
    run, as a statistic may be registered after this module is imported)."""
    return {column: stat for column, (stat, side) in stats.AVERAGED.items() if side is None}


@cached
def example_table(key: load.RunKey, definition: str) -> pl.DataFrame:
    """Per example: example, index, id, prompt, response, positions, shares, mean of every averaged statistic."""
    per = load.table(key, "examples", definition)
    return load.examples(key).join(per, on="example", how="left").drop("start", "length")


def probability(logprob: float) -> str:
    """exp(logprob) to 3 places; a value no model gives (NaN, > 0, huge) shows as it is instead of raising."""
    with np.errstate(over="ignore"):
        return f"{float(np.exp(np.float64(logprob))):.3f}"


def number(value: float | None, stored: bool = True) -> str:
    """A statistic to 3 places (a stored NaN shows as nan); "–" where the run does not store it."""
    return f"{value:.3f}" if stored and value is not None else "–"


def search(table: pl.DataFrame, query: str) -> pl.DataFrame:
    """Examples whose id, prompt or answer contains `query` (any case)."""
    if not query:
        return table
    needle = query.lower()
    return table.filter(
        pl.any_horizontal(
            pl.col(c).str.to_lowercase().str.contains(needle, literal=True) for c in ("id", "prompt", "response")
        )
    )


def decode(ids: list[int], text: dict[int, str]) -> tuple[str, int]:
    """Context text from ids; ids the token table lacks show as ⟨id⟩. Returns the text and how many lacked."""
    missing = sum(1 for i in ids if i not in text)
    return "".join(text.get(i, f"⟨{i}⟩") for i in ids), missing


def topk_table(detail: dict[str, pl.DataFrame], t: int, text: dict[int, str]) -> pl.DataFrame:
    """Both sides' top-k at position t: side, k, token_id, token (visible text), prob."""
    parts = []
    for side in load.SIDE_NAMES:
        part = detail[f"topk_{side}"].filter(pl.col("t") == t)
        parts.append(
            pl.DataFrame(
                {
                    "side": [side] * part.height,
                    "k": part["k"],
                    "token_id": part["id"],
                    "token": [tokens.bar_label(text.get(i, f"⟨{i}⟩"), i) for i in part["id"].to_list()],
                    "prob": part["logprob"].exp(),
                }
            )
        )
    return pl.concat(parts)


def render() -> None:
    """Draw the page."""
    st.header("Examples")
    divergent = divergences()
    runs = ui.chosen_runs()

    run = ui.pick_run("Run", runs, key="ex-run")
    definition = ui.definition()
    ui.one_run(run, lambda run: interval_views.ranked_examples(run, definition))
    left, right = st.columns([3, 1])
    query = left.text_input("Search by id or text", key="ex-search")
    sort = right.selectbox("Sort by", list(SORTS), key="ex-sort")
    column, descending = SORTS[sort]
    examples = ui.one_run(run, lambda run: example_table(run.key, definition))
    if examples.height == 0:
        st.info(ui.md_escape(f"{run.label} has no examples."))
        st.stop()
    table = search(examples, query).sort(column, descending=descending, nulls_last=True)
    if table.height == 0:
        st.info("No example matches the search.")
        st.stop()

    shown = table.head(MAX_OPTIONS)
    if table.height > MAX_OPTIONS:
        st.caption(f"{table.height} examples match; the first {MAX_OPTIONS} are listed.")
    labels = {
        row["example"]: f"{row['id'][:60]} · {row['positions']} tokens · {(row['share_shifted'] or 0):.0%} shifted"
        for row in shown.select("example", "id", "positions", "share_shifted").iter_rows(named=True)
    }
    e = st.selectbox("Example", list(labels), format_func=labels.get, key=f"ex-pick-{run.file}")
    with st.expander("Matching examples (table)"):
        listing = table.select(
            "example", "index", "id", "positions", *stats.SHARE_COLUMNS, *(f"mean_{c}" for c in divergent)
        )
        st.dataframe(listing, hide_index=True)
        ui.downloads(listing, "examples")

    detail, text = ui.one_run(run, lambda run: (load.example_detail(run.key, e, definition), load.token_text(run)))
    positions = detail["positions"]
    texts = [text.get(i, f"⟨{i}⟩") for i in positions["token_id"].to_list()]

    with st.expander("Prompt"):
        st.code(load.examples(run.key)["prompt"][e], language=None, wrap_lines=True)

    ui.definition_caption()
    emitted = run.artifact.has("positions/source")  # decoded by both sides together: which one emitted each token
    colour_by = st.radio(
        "Colour by",
        ["shift category", *(stat.name.upper() for stat in divergent.values()), *([EMITTED_BY] if emitted else [])],
        horizontal=True,
        key="ex-colour",
    )
    scale = next((column for column, stat in divergent.items() if stat.name.upper() == colour_by), None)
    if scale is not None and not load.has(run, scale):
        st.caption(f"This run does not store {colour_by}; tokens are coloured by shift category.")
        scale = None
    if colour_by == EMITTED_BY:
        backgrounds = [markup.side_color(side) for side in positions["source"].to_list()]
        legend = [(f"{side} side", markup.side_color(i)) for i, side in enumerate(load.SIDE_NAMES)]
    elif scale is not None:
        top = max(float(positions[scale].max() or 0.0), 1e-6)
        backgrounds = [markup.scale_color(v, top) for v in positions[scale].to_list()]
        legend = [
            (f"{divergent[scale].name.upper()} {v:.2g} nats", markup.scale_color(v, top)) for v in (0.0, top / 2, top)
        ]
    else:
        backgrounds = [markup.category_color(c) for c in positions["category"].to_list()]
        legend = [(name, markup.category_color(i)) for i, name in enumerate(load.CATEGORIES)]
    kept = {column: load.has(run, column) for column in divergent}  # "–" for a statistic the run lacks
    titles = [
        f"t={r['t']} base rank {r['rank_base']} aligned rank {r['rank_aligned']} "
        + " ".join(f"{column.upper()} {number(r[column], kept[column])}" for column in divergent)
        + (f" emitted by {markup.emitted_by(r['source'])}" if emitted else "")
        for r in positions.select("t", "rank_base", "rank_aligned", "source", *divergent).iter_rows(named=True)
    ]
    n = positions.height
    position_key, clicked_key = f"ex-t-{run.file}-{e}", f"ex-clicked-{run.file}-{e}"
    st.caption(
        "Click a token to open it below. ↵ newline, → tab; each box is one token, spaces included. Hover a token for "
        "its ranks, "
        + ", ".join(column.upper() for column in divergent)
        + (" and the side that emitted it." if emitted else ".")
    )
    if n:
        if position_key not in st.session_state:  # open on the first shifted token
            first_shifted = next((i for i, c in enumerate(positions["category"].to_list()) if c == 2), 0)
            st.session_state[position_key] = first_shifted
        fig = charts.token_map(texts, backgrounds, titles, legend, int(st.session_state[position_key]))
        event = st.plotly_chart(
            fig,
            key=f"ex-map-{run.file}-{e}",
            on_select="rerun",
            selection_mode="points",
            config={"displayModeBar": False},
        )
        clicked = charts.clicked_token(event)
        if clicked is not None and clicked != st.session_state.get(clicked_key):  # a new click, not one applied before
            st.session_state[clicked_key] = st.session_state[position_key] = clicked
            st.rerun()
    with st.expander("The answer as text"):
        st.html(markup.legend_html(legend) + "<br>" + markup.answer_html(texts, backgrounds, titles))

    if n == 0:
        st.info("This answer has no positions.")
        st.stop()
    t = int(st.number_input("Position t (or click a token above)", 0, n - 1, key=position_key))
    row = positions.row(t, named=True)
    category = load.CATEGORIES[row["category"]]
    by = f", emitted by {markup.emitted_by(row['source'])}" if emitted else ""
    st.html(
        f"Token at t = {t}: {markup.token_html(texts[t], markup.category_color(row['category']), category)} "
        f"({category}{by})"
    )
    cols = st.columns(4)
    cols[0].metric("rank under aligned", row["rank_aligned"])
    cols[1].metric("rank under base", row["rank_base"])
    cols[2].metric("P aligned", probability(row["logprob_aligned"]))
    cols[3].metric("P base", probability(row["logprob_base"]))
    cols = st.columns(4)
    cols[0].metric(
        " / ".join(column.upper() for column in divergent) + " (nats)",
        " / ".join(number(row[column], kept[column]) for column in divergent),
    )
    cols[1].metric("entropy aligned (nats)", f"{row['entropy_aligned']:.3f}")
    cols[2].metric("entropy base (nats)", f"{row['entropy_base']:.3f}")
    topk = topk_table(detail, t, text)
    ui.chart(charts.topk_bars(topk), topk, "top-k")

    for side in load.SIDE_NAMES:
        model = str(run.artifact.side_attrs[side].get("model", ""))
        with st.expander(ui.md_escape(f"{side} context ({model})")):
            stored = load.context_text(run.key, side, e)
            if stored is None:
                context, missing = decode(load.context_ids(run.key, side, e), text)
                if missing:
                    st.caption(f"{missing} context ids have no text in the token table and show as ⟨id⟩.")
            st.code(stored if stored is not None else context, language=None, wrap_lines=True)
