"""The pages' interval sections: a few lines in each page call these (Overview, Positions, Examples, Compare,
Stages, Branching factor, Experiments). Streamlit here; the tables come from dashboard/intervals.py."""

from __future__ import annotations

import html

import polars as pl
import streamlit as st

from compute.core import concentration
from compute.core.artifact.reader import open_artifact
from dashboard import experiments, interval_charts, intervals, load, tokens, ui
from dashboard.cache import cached

CAPTION = (
    "Intervals: 95 % percentile cluster bootstrap over examples (answers), 1000 resamples: positions inside one "
    "answer are correlated, so whole answers are resampled; accuracy resamples problems."
)
RANKINGS = {
    "max KL": "max_kl",
    "mean KL": "mean_kl",
    "max JS": "max_js",
    "mean JS": "mean_js",
    "shifted count": "shifted",
}
RANKED_ROWS = 50


@cached
def run_numbers(key: load.RunKey, definition: str) -> dict:
    return intervals.found(load.table(key, "estimates", definition))


def overview(runs: list[load.Run], definition: str) -> None:
    """The Overview's intervals: every number as "value [low, high]", and the main ones with whiskers."""
    st.subheader("With intervals")
    numbers = ui.each_run(runs, lambda run: (run.label, run_numbers(run.key, definition)))
    table = pl.DataFrame([intervals.text_row(label, found) for label, found in numbers], infer_schema_length=None)
    st.caption(CAPTION + " KL/JS quantiles over positions; top-k agreement: one side's top-1 in the other's top-k.")
    st.dataframe(table, hide_index=True)
    ui.downloads(table, "overview-intervals")
    ys = {"share_shifted": "shifted", "share_marginal": "marginal"}
    frame = ui.with_short(
        pl.DataFrame([intervals.bounds_row(label, found, list(ys)) for label, found in numbers]), runs
    )
    fig = interval_charts.whisker_bars(frame, ui.SHORT, ys, "Shift shares", percent=True, horizontal=True)
    ui.chart(fig, frame, "overview-whiskers")


def whiskered(fig, runs: list[load.Run], definition: str, traces: dict[str, str]):
    """`fig` (grouped bars, one bar per run, named by its label or its short name; vertical or horizontal) with
    whiskers: trace name -> the number it draws."""
    by_name = {html.escape(run.label, quote=False): run for run in runs}
    shorts = ui.short_names(runs)
    by_name |= {html.escape(shorts[run.label], quote=False): run for run in runs}
    errors, axis = {}, "y"
    for trace in fig.data:
        if trace.name in traces:
            axis = "x" if trace.orientation == "h" else "y"
            names = trace.y if axis == "x" else trace.x
            found = [run_numbers(by_name[name].key, definition).get(traces[trace.name]) for name in names]
            errors[trace.name] = ([e and e.low for e in found], [e and e.high for e in found])
    return interval_charts.whiskers_on(fig, errors, axis=axis)


@cached
def position_bands(key: load.RunKey, definition: str) -> pl.DataFrame:
    return load.table(key, "position_intervals", definition)


def band_chart(
    runs: list[load.Run], definition: str, column: str, title: str, unit: str, percent: bool, shown: pl.DataFrame
):
    """The Positions page's curve of `column` with bands and its table (`shown`, the page's own, with each bin's
    `low` and `high`), or None where no run stores it."""
    drawn = set(shown["run"].to_list())  # the runs the page could read (a failing one has its notice)
    readable = [run for run in runs if run.label in drawn]
    bands = ui.each_run(readable, lambda run: (run.label, position_bands(run.key, definition))) if readable else []
    parts = [
        intervals.band_frame(table, column, label) for label, table in bands if table["number"].is_in([column]).any()
    ]
    if not parts:
        return None
    frame = pl.concat(parts)
    fig = interval_charts.band_lines(ui.with_short(frame, readable), "t_start", title, unit, percent, name=ui.SHORT)
    return fig, shown.join(frame.select("run", "t_start", "low", "high"), on=["run", "t_start"], how="left")


def positions_caption() -> None:
    st.caption(
        CAPTION + f" Bands are cut, and points drawn faint, where fewer than {intervals.HANDFUL} answers reach the "
        "position: there a curve rests on a handful of answers."
    )


def ranked_examples(run: load.Run, definition: str) -> None:
    """Examples ranked by how much the sides diverge; each row opens that example at its largest KL."""
    with st.expander("Examples ranked by divergence (max / mean KL and JS, shifted count)"):
        by = st.radio("Rank by", list(RANKINGS), horizontal=True, key="ex-rank-by")
        sums = load.table(run.key, "example_sums", definition)
        ids = load.examples(run.key)["id"].to_list()
        ranked = concentration.ranked_examples(sums, ids, RANKINGS[by], RANKED_ROWS)
        st.caption(
            f"The top {RANKED_ROWS}; t is the position of the example's largest KL (its token view opens there)."
        )
        st.dataframe(ranked, hide_index=True)
        if ranked.height == 0:
            return
        left, right = st.columns([4, 1], vertical_alignment="bottom")
        pick = left.selectbox(
            "Ranked example",
            range(ranked.height),
            format_func=lambda r: f"{ranked['id'][r]} · t = {ranked['t'][r]}",
            key="ex-rank-pick",
        )
        row = ranked.row(pick, named=True)
        right.button(
            "Open",
            key="ex-rank-open",
            on_click=_open,
            args=(run, int(row["example"]), str(row["id"]), max(int(row["t"]), 0)),
        )


def _open(run: load.Run, example: int, example_id: str, t: int) -> None:
    """Point the Examples page's widgets at an example and position (run before the page reruns)."""
    st.session_state.update({"ex-search": example_id, f"ex-pick-{run.file}": example, f"ex-t-{run.file}-{example}": t})


@cached
def paired_numbers(a: load.RunKey, b: load.RunKey, definition: str) -> tuple[dict, int]:
    matched = intervals.shared_rows(load.table(a, "answers"), load.table(b, "answers"))
    sums = load.table(a, "example_sums", definition), load.table(b, "example_sums", definition)
    return (intervals.paired(*sums, matched) if matched.height else {}), matched.height


def paired(pairs: list[tuple[load.Run, load.Run]], definition: str) -> None:
    """Paired differences (a - b) of runs over the same answers, on the answers both hold."""
    rows = []
    for a, b in pairs:
        differences, shared = paired_numbers(a.key, b.key, definition)
        if shared:
            table = intervals.difference_rows(differences)
            rows.append(
                table.select(pl.lit(f"{a.label} − {b.label}").alias("a − b"), pl.lit(shared).alias("answers"), pl.all())
            )
    if not rows:
        return
    st.subheader("Paired differences over the same answers")
    st.caption(
        "Each number of run a minus run b on the answers both hold (same example id and token ids), with a paired "
        "95 % interval: the same resamples of those answers for both runs. Where the interval includes 0 the "
        "difference is not shown."
    )
    table = pl.concat(rows)
    st.dataframe(table, hide_index=True)
    ui.downloads(table, "paired-differences")


def all_pairs(runs: list[load.Run]) -> list[tuple[load.Run, load.Run]]:
    return [(a, b) for i, a in enumerate(runs) for b in runs[i + 1 :]]


def accuracy_whiskers(fig, points: pl.DataFrame, runs: list[load.Run], definition: str):
    """Horizontal whiskers on the Experiments accuracy chart: each point's share of tokens from the inserted side
    with its interval (bootstrap over problems); the accuracy's own whiskers are its Wilson interval."""
    by_label = {run.label: run for run in runs}
    errors: dict[str, tuple[list, list]] = {}
    for (curve,), part in points.group_by("curve", maintain_order=True):
        share = []
        for label in part["run"].to_list():
            side = experiments.inserted_side(*load.decoding(by_label[label]))
            try:
                numbers = run_numbers(by_label[label].key, definition) if side is not None else {}
            except load.TablesPending:  # a run of the experiment not picked, still being computed: no whisker yet
                numbers = {}
            share.append(numbers.get(f"share_from_{load.SIDE_NAMES[side]}") if side is not None else None)
        errors[str(curve)] = ([e and e.low for e in share], [e and e.high for e in share])
    st.caption(CAPTION + " Horizontal whiskers: the inserted side's share of the tokens.")
    return interval_charts.whiskers_on(fig, errors, axis="x")


@cached
def _concentration(key: load.RunKey) -> tuple[pl.DataFrame, dict, pl.DataFrame]:
    """A run's base-favoured tokens, forking-token overlap and entropy change by base-entropy decile (reads four
    per-position columns once per server)."""
    artifact = open_artifact(key.path)
    read = artifact.read
    entropy = {side: read(f"sides/{side}/entropy").astype("float64") for side in load.SIDE_NAMES}
    favoured = concentration.base_favoured(
        read("positions/token_id"), read("sides/aligned/logprob"), read("sides/base/logprob"), artifact.token_texts()
    )
    forking = concentration.forking_overlap(entropy["aligned"], entropy["base"])
    return favoured, forking, concentration.entropy_change_by_decile(entropy["aligned"], entropy["base"])


def where_change_concentrates(run: load.Run) -> None:
    """Token types page: the base-favoured tokens beside the most shifted ones, and forking tokens."""
    favoured, forking, deciles = ui.one_run(run, lambda run: _concentration(run.key))
    st.subheader("Base-favoured tokens")
    st.caption(
        "The answer tokens the base side prefers most over the aligned side: log P_base(o_t) - log P_aligned(o_t) "
        "summed over each token's positions (largest first), and its mean per position."
    )
    shown = favoured.with_columns(pl.col("text").map_elements(tokens.visible, return_dtype=pl.String))
    st.dataframe(shown, hide_index=True)
    ui.downloads(shown, "base-favoured")
    st.subheader("Forking tokens")
    st.caption(
        f"Of the aligned side's highest-entropy 20 % of positions, {forking['aligned_in_base']:.1%} are also among "
        f"the base side's highest 20 %, and {forking['base_in_aligned']:.1%} the other way (Wang et al. 2025). "
        "Below: the mean change in entropy (aligned - base) by decile of the base side's entropy (0: most confident)."
    )
    fig = interval_charts.decile_bars(deciles)
    ui.chart(fig, deciles, "entropy-change-by-decile")
