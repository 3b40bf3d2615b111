"""Experiments: accuracy of mixed decoding (the rules of compute/core/rules/) against the pure sides, the sweeps
(logit arithmetic's alpha, prefill's k), where the inserted tokens went, and on any run how well the base side's
uncertainty predicts the shifts (the nudging paper's γ)."""

from __future__ import annotations

import polars as pl
import streamlit as st

from compute.core import token_types
from compute.core.rules import RULES
from dashboard import charts, experiment_charts, experiments, interval_views, load, ui
from dashboard.cache import CACHE


def aligned_top_share(run: load.Run) -> float:
    """The share of a run's positions whose answer token is the aligned side's top choice (it reads a whole
    column: once per server, keyed on the run's file identity)."""
    read = lambda: float((run.artifact.read("sides/aligned/rank") == 0).mean())  # noqa: E731
    return CACHE.get((__name__, "aligned_top_share", run.key), read)


def facts(run: load.Run) -> experiments.RunFacts:
    """The run's decoding, verdicts and share of tokens from the inserted side."""
    rule, params = load.decoding(run)
    side = experiments.inserted_side(rule, params)
    share = None
    if side is not None and run.artifact.has("positions/source"):
        share = experiments.share_of_side(load.provenance(run.key)["source"].to_numpy(), side)
    attrs, sides = run.artifact.attrs, run.artifact.side_attrs
    dataset = str(attrs.get("dataset", ""))
    top_share = None
    if "decoding" not in attrs and not dataset.endswith((".h5", ".hdf5")) and run.artifact.n_positions:
        top_share = aligned_top_share(run)
    decoded = experiments.answers_decoded("decoding" in attrs, dataset, top_share)
    return experiments.run_facts(run.label, attrs, sides, (rule, params), load.verdicts(run.key), share, decoded)


def breakdowns(run: load.Run) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Where the inserted side's tokens are in a mixed run: by bin of t and by token type, labelled with the run."""
    side = experiments.inserted_side(*load.decoding(run))
    positions = load.provenance(run.key)
    types = token_types.token_types(load.tokens(run.key))
    label = pl.lit(run.label).alias("run")
    return (
        experiments.inserted_by_position(positions, side).select(label, pl.all()),
        experiments.inserted_by_type(positions, types, side).select(label, pl.all()),
    )


def gamma_table(run: load.Run, definition: str) -> pl.DataFrame:
    table = load.table(run.key, "base_uncertainty", definition)
    return experiments.gamma_curve(table).select(pl.lit(run.label).alias("run"), pl.all())


def render() -> None:
    """Draw the page."""
    st.header("Experiments")
    st.caption(
        "Runs on one dataset, judged by one task, with the same pair of sides (model, adapter and template of each) "
        "form an experiment; they differ in how the answers were decoded: "
        + "; ".join(f"**{name}**: {spec.summary}" for name, spec in RULES.items())
        + ". A run scored over answers given (teacher-forced) decoded nothing and is in no experiment."
    )
    runs = ui.chosen_runs()
    found = ui.each_run(runs, facts)
    given = [f.run for f in found if not f.decoded]
    if given:
        st.caption(ui.md_escape(f"Scored over answers given (teacher-forced), in no experiment: {', '.join(given)}."))
    plain = [f.run for f in found if f.decoded and not experiments.is_experiment(f)]
    if plain:
        st.caption(ui.md_escape(f"Neither a task nor mixed decoding (only the γ curve below): {', '.join(plain)}."))

    groups = experiments.group([f for f in found if experiments.is_experiment(f)])
    if not groups:
        st.info("None of the picked runs has a task or was decoded by both sides together.")
    else:
        members = groups[st.selectbox("Experiment", list(groups), key="exp-group")]
        if st.checkbox("Include this experiment's runs not picked in the sidebar", value=True, key="exp-unpicked"):
            picked = {run.label for run in runs}
            unpicked = [run for run in ui.all_runs()[0] if run.label not in picked]
            runs = runs + unpicked
            unpicked_facts = ui.each_run(unpicked, facts) if unpicked else []  # each_run stops the page on []
            same = [f for f in unpicked_facts if f.experiment == members[0].experiment and experiments.is_experiment(f)]
            if same:
                members = members + same
                unpicked_note = f"{len(same)} of the experiment's {len(members)} runs are not picked in the sidebar."
                st.caption(ui.md_escape(unpicked_note))
        table = experiments.runs_table(members)
        st.dataframe(table, hide_index=True)
        ui.downloads(table, "experiment-runs")
        untasked = [f.run for f in members if f.judged is None]
        if untasked:
            st.caption(ui.md_escape(f"No task (accuracy not judged): {', '.join(untasked)}."))
        points, references = experiments.accuracy_points(members), experiments.references(members)
        st.caption(
            "Accuracy with its 95 % Wilson interval over the judged answers. Dashed lines: the runs of one side "
            "alone, each labelled with its run and the number of problems it was judged on."
        )
        if points.height:
            shown = pl.concat([points, references], how="diagonal_relaxed")
            fig = interval_views.accuracy_whiskers(
                experiment_charts.accuracy_curves(points, references), points, runs, ui.definition()
            )
            ui.chart(fig, shown, "experiment-accuracy")
        for rule in experiments.sweeps(members):
            swept = experiments.sweep_points(members, rule)
            shown = pl.concat([swept, references], how="diagonal_relaxed")
            ui.chart(experiment_charts.sweep_accuracy(swept, references, rule), shown, f"experiment-{rule}")
            if RULES[rule].mixture is not None:
                ui.chart(experiment_charts.sweep_share(swept, rule), swept, f"experiment-{rule}-share")

        labels = {f.run for f in members if f.share_inserted is not None}
        mixed = [run for run in runs if run.label in labels]
        if mixed:
            st.subheader("Where the inserted tokens are")
            by_position, by_type = zip(*ui.each_run(mixed, breakdowns), strict=True)
            binned = pl.concat(by_position).with_columns((pl.col("t_start") + 1).alias("t_start + 1"))
            title = "Share of tokens from the inserted side"
            fig = charts.lines(
                binned,
                "t_start + 1",
                "share_inserted",
                "run",
                f"{title}, by position",
                "share",
                percent=True,
                log_x=True,
            )
            ui.chart(fig, binned.drop("t_start + 1"), "experiment-inserted-by-position")
            typed = pl.concat(by_type)
            fig = charts.bars(typed, "type", "share_inserted", "run", f"{title}, by token type", "share", percent=True)
            ui.chart(fig, typed, "experiment-inserted-by-type")

    st.subheader("Base uncertainty and the shifts (nudging's observation)")
    definition = ui.definition()
    ui.definition_caption()
    st.caption(
        "For each γ: the share of positions where the base side's top-1 probability is below γ (x), and the share of "
        "the shifted positions that are among them (y). Far above the diagonal, the base side's own uncertainty marks "
        "where alignment steps in, which is what nudging relies on. Teacher-forced: any run has it."
    )
    curves = pl.concat(ui.each_run(ui.chosen_runs(), lambda run: gamma_table(run, definition)))
    ui.chart(charts.gamma_curves(curves), curves, "base-uncertainty")
