"""Overview: all chosen runs side by side, and what they show in two sentences."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import charts, interval_views, load, stats, story, ui


def summarize(run: load.Run, definition: str) -> dict[str, object]:
    """One row of the overview table: the run's sides and its stored summary under `definition`."""
    artifact = run.artifact
    row: dict[str, object] = {"run": run.label, "name": artifact.name}
    for side in load.SIDE_NAMES:
        row[f"{side}_model"] = str(artifact.side_attrs[side].get("model", ""))
        row[f"{side}_template"] = str(artifact.side_attrs[side].get("template", ""))
    row["examples"] = artifact.n_examples
    row["positions"] = artifact.n_positions
    verdicts = load.verdicts(run.key)
    row["task"], row["accuracy"] = (verdicts.task, verdicts.accuracy) if verdicts else (None, None)
    row.update(load.table(run.key, "summary", definition).row(0, named=True))
    row["early"], row["later"] = story.early_and_later(load.table(run.key, "position_bins", definition))
    return row


def render() -> None:
    """Draw the page."""
    st.header("Overview")
    runs = ui.chosen_runs()
    definition = ui.definition()

    rows, sources = zip(
        *ui.each_run(runs, lambda run: (summarize(run, definition), load.aggregates_source(run))), strict=True
    )
    table = ui.with_short(pl.DataFrame(list(rows)), runs)
    token = "the answer token" if definition == load.ANSWER_TOKEN else "the aligned side's top token"
    st.markdown(ui.md_escape(story.sentences(table.drop("name").rename({ui.SHORT: "name"}), token)))
    early, later = f"share_shifted_t<{story.EARLY}", f"share_shifted_t>={story.EARLY}"
    table = table.rename({"early": early, "later": later})
    if table["task"].is_null().all():  # no run has a task: no accuracy to show
        table = table.drop("task", "accuracy")
    ui.definition_caption()
    st.dataframe(table, hide_index=True)
    ui.downloads(table, "overview")

    ui.chart(charts.shares_bars(table, ui.SHORT), table.select("run", ui.SHORT, *stats.SHARE_COLUMNS), "shift-shares")
    left, right = st.columns(2)
    with left:
        divergences = {f"mean_{c}": stats.title(c) for c, (stat, side) in stats.AVERAGED.items() if side is None}
        shown = table.select("run", ui.SHORT, *divergences)
        missing = [stats.title(c.removeprefix("mean_")) for c in divergences if shown[c].is_null().any()]
        fig = charts.grouped_bars(shown, ui.SHORT, divergences, "Mean divergence per position (nats)", horizontal=True)
        fig = interval_views.whiskered(fig, runs, definition, {title: c for c, title in divergences.items()})
        ui.chart(fig, shown, "mean-kl")
        if missing:
            st.caption(f"Runs without a bar for {', '.join(missing)} do not store it (an optional statistic).")
    with right:
        teacher_forced = table.select("run", ui.SHORT, "exp_entropy_aligned", "exp_entropy_base", "exp_entropy_ratio")
        fig = charts.grouped_bars(
            teacher_forced,
            ui.SHORT,
            {"exp_entropy_aligned": "aligned", "exp_entropy_base": "base"},
            "exp(mean teacher-forced entropy)",
            horizontal=True,
        )
        fig = interval_views.whiskered(
            fig, runs, definition, {side: f"exp_entropy_{side}" for side in ("aligned", "base")}
        )
        ui.chart(fig, teacher_forced, "teacher-forced-entropy")

    with st.expander("About these numbers"):
        st.caption(
            "short_name: the run's name in the charts (its `short_name` attribute, or its name without the start most "
            f"runs shown share). {early} / {later}: the shifted share at the start of the answer and after. "
            "answer_is_aligned_top: the share of positions where the answer token is the aligned side's own top "
            "choice; there both definitions agree (on the aligned side's own greedy answers, everywhere). "
            "exp_entropy_*: exp of the mean teacher-forced entropy, and the base / aligned ratio; this is not the "
            "branching factor of Yang & Holtzman, which samples continuations (see the Branching factor page)."
            + (" accuracy: the share of judged answers that the run's task judged right." if "task" in table else "")
        )
        computed = sources.count("positions")
        if computed:
            st.caption(
                f"{computed} of the runs shown store no aggregates, so this server computed them from their positions "
                "(once per file); `tds aggregate RUN.h5` stores them beside each run."
            )
    interval_views.overview(runs, definition)
