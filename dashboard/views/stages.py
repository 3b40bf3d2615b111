"""Stages: runs scored over the same answers (a stage chain), position by position: which pairs shift each one."""

from __future__ import annotations

import hashlib

import polars as pl
import streamlit as st

from compute.core.categories import MARGINAL, SHIFTED
from compute.core.errors import one_line
from dashboard import charts, interval_views, load, pages, stages, stats, tokens, ui
from dashboard.cache import cached
from dashboard.views import overlap

CHAIN, NAME = "the chain of their sides", "run name"
SHIFTED_OR_MARGINAL = MARGINAL  # the least category that counts as shifting a position, with the box ticked


@cached
def stage_counts(keys: tuple[load.RunKey, ...], definition: str, least: int) -> stages.StageCounts:
    """The shared answers' positions of the runs `keys`, counted by pattern (read block by block)."""
    lengths = load.shared_answers(keys)["length"].to_numpy()
    blocks = (
        stages.Block(block.categories, block.token_ids, lengths[block.answers], block.answers.start)
        for block in load.shared_blocks(keys, definition, token_ids=True)
    )
    return stages.count(blocks, len(keys), least, int(lengths.max(initial=0)), load.tokens(keys[0]))


def group_label(members: tuple[int, ...], answers: int, runs: list[load.Run]) -> str:
    names = ", ".join(runs[i].artifact.name for i in members)
    shown = names if len(names) <= 150 else names[:150] + "…"
    return f"{len(members)} runs · {answers} answer{'' if answers == 1 else 's'} in common: {shown}"


def open_in_examples(run: load.Run, example: int, example_id: str, t: int) -> None:
    """Show position t of the run's example row `example` on the Examples page (its widgets' state)."""
    st.session_state.update(
        {"ex-run": run.label, "ex-search": example_id, f"ex-pick-{run.file}": example, f"ex-t-{run.file}-{example}": t}
    )
    st.switch_page(pages.script("examples"))


def distinct(members: tuple[int, ...], runs: list[load.Run]) -> bool:
    """Whether the runs' pairs of sides differ (runs of one pair over the same answers agree by construction)."""
    sides = [run.artifact.side_attrs for run in (runs[i] for i in members)]
    return any(other != sides[0] for other in sides[1:])


def distinct_first(
    groups: list[tuple[tuple[int, ...], int]], runs: list[load.Run]
) -> list[tuple[tuple[int, ...], int]]:
    """The groups of runs of different pairs first (in their order), then those of one pair."""
    return sorted(groups, key=lambda group: not distinct(group[0], runs))


def folder_chain() -> list[str]:
    """The labels of the folder's largest group of runs of different pairs over the same answers (a stage chain),
    or [] where it has none."""
    every = []
    for run in ui.all_runs()[0]:
        try:
            load.answer_set(run.key)
        except Exception:  # noqa: BLE001  (a file that cannot be read offers no chain; where picked, it is named)
            continue
        every.append(run)
    groups = overlap.groups(tuple(run.key for run in every))
    found = [members for members, _ in groups if distinct(members, every)]
    return [every[i].label for i in found[0]] if found else []


def render() -> None:
    """Draw the page."""
    st.header("Stages: which pair shifts each position")
    picked = ui.chosen_runs(least=2)
    readable = ui.each_run(picked, lambda run: (run, load.answer_set(run.key)))
    runs, answer_sets = [run for run, _ in readable], [answers for _, answers in readable]
    groups = distinct_first(overlap.groups(tuple(run.key for run in runs)), runs)
    if not groups or not distinct(groups[0][0], runs):
        why = (
            "The picked runs that share answers are of one pair of sides, so they agree by construction"
            if groups
            else "No two of the picked runs share an answer (same example id and answer token ids)"
        )
        chain = folder_chain()
        st.info(
            f"{why}, so there are no stages to follow: pick runs scored over the same answers, such as a stage chain"
            + (f" (this folder has one of {len(chain)} runs)." if chain else ".")
        )
        if chain:
            st.button(
                f"Pick the {len(chain)} runs of that chain",
                key="stages-pick-chain",
                on_click=lambda: st.session_state.update({ui.RUNS_KEY: chain}),
            )
        if not groups:
            st.stop()

    st.caption(
        "Runs scored over the same answers (the same token ids for the same example id), whatever their pairs of "
        "sides: for every position they share, which of them shift it."
    )
    chosen = st.selectbox(
        "Runs over the same answers",
        range(len(groups)),
        format_func=lambda g: group_label(*groups[g], runs),
        key="stages-group",
    )
    members = [runs[i] for i in groups[chosen][0]]
    names = [run.artifact.name for run in members]
    names = names if len(set(names)) == len(names) else [run.label for run in members]
    found = stages.chain([run.artifact.side_attrs for run in members], names)
    order_by = st.radio(
        "Order pairs by", [CHAIN, NAME] if found.stages else [NAME], horizontal=True, key="stages-order"
    )
    order = found.order if order_by == CHAIN else sorted(range(len(members)), key=lambda i: names[i])
    if found.stages:
        st.caption(
            ui.md_escape("Chain inferred from the sides (one run's base side is the next one's aligned side): ")
            + ui.md_escape(" → ".join(" / ".join(step) for step in found.stages))
        )
    else:
        st.caption("These runs' sides make no chain (a side is compared with itself, or two runs go both ways).")
    ordered = [members[i] for i in order]
    shown = [names[i] for i in order]
    digest = hashlib.blake2b("\0".join(run.key.path for run in ordered).encode(), digest_size=8).hexdigest()
    kept = st.multiselect(
        "Pairs",
        shown,
        default=shown[: stages.MAX_RUNS],
        max_selections=stages.MAX_RUNS,
        key=f"stages-runs-{digest}",
        help=f"Up to {stages.MAX_RUNS} runs of the group, in the order above.",
    )
    if len(kept) < 2:
        st.info("Pick at least 2 of these runs.")
        st.stop()
    picked_rows = [i for i, name in enumerate(shown) if name in kept]  # in the order above, whatever the clicks
    chosen_runs = [ordered[i] for i in picked_rows]
    short = stages.short_names([shown[i] for i in picked_rows])
    definition = ui.definition()
    ui.definition_caption()
    least = (
        SHIFTED_OR_MARGINAL if st.checkbox("Count marginal positions as shifted", key="stages-marginal") else SHIFTED
    )

    keys = tuple(run.key for run in chosen_runs)
    try:
        counts = stage_counts(keys, definition, least)
    except Exception as err:  # noqa: BLE001  (a file damaged after it was listed: one line naming it)
        st.warning(ui.md_escape(one_line(err)), icon=":material/error:")
        st.stop()
    shared = load.shared_answers(keys)
    total = int(counts.counts.sum())
    cols = st.columns(3)
    cols[0].metric("pairs", len(chosen_runs))
    cols[1].metric("answers all of them hold", shared.height)
    cols[2].metric("positions", total)
    answers_of = {run.label: answers for run, answers in zip(runs, answer_sets, strict=True)}
    each = ", ".join(f"{name} {len(answers_of[run.label])}" for name, run in zip(short, chosen_runs, strict=True))
    st.caption(ui.md_escape(f"Non-empty answers of each: {each}. Only the answers all of them hold are counted."))
    pairs_table = pl.DataFrame(
        {
            "pair": short,
            "run": [run.label for run in chosen_runs],
            "base side": [stages.side_name(run.artifact.side_attrs["base"]) for run in chosen_runs],
            "aligned side": [stages.side_name(run.artifact.side_attrs["aligned"]) for run in chosen_runs],
        }
    ).join(stages.run_shares(counts, short), on="pair", maintain_order="left")
    st.dataframe(pairs_table, hide_index=True)
    if total == 0:
        st.info("These runs share no answer position.")
        st.stop()
    interval_views.paired(interval_views.all_pairs(chosen_runs), definition)

    st.subheader("Which pairs shift each position")
    table = stages.patterns(counts, short)
    unshifted = table.filter(pl.col("shifted_by") == stages.NONE)["share"].sum()
    st.caption(f"Positions no pair shifts ({unshifted:.1%}) are in the table, not the chart.")
    fig = charts.bars(
        table.filter(pl.col("shifted_by") != stages.NONE).with_columns(pl.lit("shared positions").alias("of")),
        "shifted_by",
        "share",
        "of",
        "Share of positions by the pairs that shift them",
        "share",
        percent=True,
    )
    ui.chart(fig, table, "stages-patterns", show_table=True)

    st.subheader("By position in the answer")
    st.caption(
        f"Positions 0..{stats.EXACT_POSITIONS - 1} one by one, then two bins per doubling; the share of each bin's "
        "positions per pattern (positions no pair shifts are in the table, not the chart)."
    )
    binned = stages.by_position(counts, short)
    plotted = binned.filter(pl.col("shifted_by") != stages.NONE)
    fig = charts.position_lines(
        plotted, "t_start", "share", "shifted_by", "Share of the bin's positions", "share", True
    )
    ui.chart(fig, binned, "stages-positions")

    st.subheader("By token type")
    typed = stages.by_type(counts, short)
    fig = charts.bars(
        typed.filter(pl.col("shifted_by") != stages.NONE),
        "type",
        "share",
        "shifted_by",
        "Share of each token type's positions",
        "share",
        percent=True,
    )
    ui.chart(fig, typed, "stages-types")

    st.subheader("Positions of one pattern")
    present = table.filter(pl.col("positions") > 0)
    shifting = present["pairs"].to_list()
    pattern = st.selectbox(
        "Pattern",
        present["pattern"].to_list(),
        index=next((i for i, pairs in enumerate(shifting) if pairs > 0), 0),  # the first one some pair shifts
        format_func=dict(zip(present["pattern"], present["shifted_by"], strict=True)).get,
        key=f"stages-pattern-{digest}",
    )
    ids = load.examples(chosen_runs[0].key)["id"]
    text = load.token_text(chosen_runs[0])
    sample = counts.samples.filter(pl.col("pattern") == pattern).join(
        shared.with_row_index("answer").select(pl.col("answer").cast(pl.Int64), "example_0"),
        on="answer",
        maintain_order="left",
    )
    sample = sample.select(
        "answer",
        pl.Series("id", ids.gather(sample["example_0"]), dtype=pl.String),
        "t",
        pl.Series(
            "token", [tokens.visible(text.get(i, f"⟨{i}⟩")) for i in sample["token_id"].to_list()], dtype=pl.String
        ),
    )
    st.caption(
        f"{sample.height} of its {int(present.filter(pl.col('pattern') == pattern)['positions'][0])} positions, "
        f"the first ones in {short[0]}'s order (at most {stages.SAMPLES})."
    )
    st.dataframe(sample.drop("answer"), hide_index=True)
    ui.downloads(sample.drop("answer"), "stages-pattern-positions")
    left, right, button = st.columns([3, 3, 1], vertical_alignment="bottom")
    row = left.selectbox(
        "Position",
        range(sample.height),
        format_func=lambda r: f"{sample['id'][r]} · t = {sample['t'][r]} · {sample['token'][r]}",
        key=f"stages-position-{digest}-{pattern}",
    )
    target = right.selectbox("in run", range(len(chosen_runs)), format_func=lambda i: short[i], key="stages-open-run")
    if button.button("Open in Examples", key="stages-open", disabled=sample.height == 0):
        answer = int(sample["answer"][row])
        example = int(shared[f"example_{target}"][answer])
        open_in_examples(chosen_runs[target], example, str(sample["id"][row]), int(sample["t"][row]))
