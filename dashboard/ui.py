"""Streamlit pieces the pages share: the run list, run pickers, charts with downloadable tables."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from compute.core.errors import one_line
from dashboard import load, names
from dashboard.cache import cached

T = TypeVar("T")
LOG = logging.getLogger(__name__)
SHORT = "short_name"  # the column charts name runs by (a table's `run` column holds the full label)
RUNS_KEY = "runs"  # session-state key of the sidebar multiselect (run labels)
DEFAULT_WHY_KEY = "runs-default-why"  # session-state key: why the picker opened on its runs, in a few words
DEFINITION_KEY = "category-definition"  # session-state key of the sidebar's shift-category definition
SCRIPT_RUN_KEY = "script-run"  # session-state key: counts the runs of the app's script (app.py)
NOTICE_SHOWN_KEY = "computing-notice-shown"  # session-state key: the script run that said which runs are computing
REFRESH_S = 2.0  # while a shown run's tables are being computed, the page looks again this often
NAMED = 5  # runs named in the line saying which are still being computed (then "and N more")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!$:<>|~])")


def md_escape(text: str) -> str:
    """Text that Markdown (and Streamlit's :color[] and $math$) shows literally."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def all_runs() -> tuple[list[load.Run], list[str]]:
    """The complete runs in the artifacts directory and one line per file that is not one (the folder is listed
    on every call; the runs of one listing are opened and labelled once per server)."""
    keys, unreadable = load.scan(load.artifacts_dir())
    runs, problems = _opened_runs(tuple(keys))
    return list(runs), unreadable + list(problems)


@cached
def _opened_runs(keys: tuple[load.RunKey, ...]) -> tuple[tuple[load.Run, ...], tuple[str, ...]]:
    runs, problems = load.open_runs(list(keys))
    return tuple(runs), tuple(problems)


def chosen_runs(least: int = 1) -> list[load.Run]:
    """The runs picked in the sidebar, in the order picked (all runs if the picker is not there); the page stops with a
    hint when fewer than `least` are picked."""
    runs, _ = all_runs()
    picked = st.session_state.get(RUNS_KEY)
    by_label = {run.label: run for run in runs}
    chosen = runs if picked is None else [by_label[label] for label in picked if label in by_label]  # picked order
    if len(chosen) < least:
        st.info(
            "Pick at least one run in the sidebar." if least == 1 else f"Pick at least {least} runs in the sidebar."
        )
        st.stop()
    damage_notices(chosen)
    computing_notice(chosen)
    return chosen


def new_script_run() -> None:
    """Called first on every run of the app's script: what is said once per run counts from here."""
    st.session_state[SCRIPT_RUN_KEY] = st.session_state.get(SCRIPT_RUN_KEY, 0) + 1


def computing_notice(runs: list[load.Run]) -> None:
    """Wait a moment (load.wait_s) for the shown runs' tables being computed from their positions, then say in
    one line which are still not ready (once per run of the script: pages leave those runs out) and refresh the
    page when they are."""
    run_mark = st.session_state.get(SCRIPT_RUN_KEY)
    if run_mark is not None and st.session_state.get(NOTICE_SHOWN_KEY) == run_mark:
        return
    pending = set(load.still_computing([run.key for run in runs]))
    if pending:
        st.session_state[NOTICE_SHOWN_KEY] = run_mark
        left = [run for run in runs if run.key in pending]
        _still_computing([run.key for run in left], [run.label for run in left])


@st.fragment(run_every=REFRESH_S)
def _still_computing(keys: list[load.RunKey], labels: list[str]) -> None:
    """The line naming the runs still being computed; it looks again every REFRESH_S seconds and reruns the
    page once some are ready."""
    left = load.computing(keys)
    if len(left) < len(keys):
        st.rerun()
    named = ", ".join(labels[:NAMED]) + (f" and {len(labels) - NAMED} more" if len(labels) > NAMED else "")
    st.info(
        md_escape(f"Still computing the tables of {len(labels)} of the runs shown from their positions: {named}.")
        + " They appear here when ready; `tds aggregate RUN.h5` stores them beside a run.",
        icon=":material/hourglass_top:",
    )


def short_names(runs: list[load.Run]) -> dict[str, str]:
    """Run label -> its short display name among `runs` (dashboard/names.py), for charts."""
    found = names.short_names([(run.artifact.name, run.short_name) for run in runs])
    return dict(zip((run.label for run in runs), found, strict=True))


def with_short(frame: pl.DataFrame, runs: list[load.Run], column: str = "run") -> pl.DataFrame:
    """`frame` with a SHORT column: the short display name of the run labelled in `column` (charts plot it and
    show the label on hover)."""
    return frame.with_columns(pl.col(column).replace_strict(short_names(runs), default=None).alias(SHORT))


def definition() -> str:
    """The shift-category definition picked in the sidebar (the answer token's base rank by default)."""
    return st.session_state.get(DEFINITION_KEY, load.ANSWER_TOKEN)


def definition_control() -> None:
    """The sidebar control every page with categories follows: ours, or AlignTDS's (the paper's)."""
    st.sidebar.radio(
        "Shift category from",
        list(load.DEFINITIONS),
        key=DEFINITION_KEY,
        format_func=lambda definition: load.DEFINITIONS[definition].label,
        help=" · ".join(f"{d.label}: {d.meaning}." for d in load.DEFINITIONS.values()),
    )


def definition_caption() -> None:
    """One line saying which definition the categories on this page use."""
    chosen = definition()
    st.caption(
        f"Categories by the {load.DEFINITIONS[chosen].label}: {load.DEFINITIONS[chosen].meaning}; unshifted 0, "
        "marginal 1-2, "
        "shifted 3+. Switch in the sidebar."
    )


def failed(run: load.Run, err: Exception) -> None:
    """One line naming the run's file relative to the artifacts folder (the traceback and the server's paths go
    to the server log only)."""
    LOG.warning("%s failed", run.key.path, exc_info=err)
    message = load.for_viewers(one_line(err), Path(run.key.path).parent)
    named = message if message.startswith(run.file) else f"{run.file}: {message}"
    st.warning(md_escape(named), icon=":material/error:")


def damage_notices(runs: list[load.Run]) -> None:
    """One notice per stored table of a shown run that fails its invariants (the pages compute it afresh)."""
    for run in runs:
        try:
            damaged = load.damaged_tables(run.key)
        except Exception as err:  # noqa: BLE001  (the boundary: whatever a file does, the page goes on)
            failed(run, err)
            continue
        for name, problem in damaged.items():
            st.warning(
                md_escape(f"{run.file}: its stored {name} table is damaged ({problem}); computed from its positions"),
                icon=":material/warning:",
            )


def each_run(runs: list[load.Run], compute: Callable[[load.Run], T]) -> list[T]:
    """compute(run) for every run, each on its own: a run that fails gets a one-line notice and is left out, so
    one bad file never takes a page down for the others; a run whose tables are still being computed is left
    out (computing_notice names it). Stops the page when no run gave a result."""
    results = []
    for run in runs:
        try:
            results.append(compute(run))
        except load.TablesPending:
            continue  # named by computing_notice; shown once its tables are ready
        except Exception as err:  # noqa: BLE001  (the boundary: whatever a file does, the page goes on)
            failed(run, err)
    if not results:
        st.stop()
    return results


def one_run(run: load.Run, compute: Callable[[load.Run], T]) -> T:
    """compute(run), or a one-line notice and the page stops."""
    return each_run([run], compute)[0]


def pick_run(label: str, runs: list[load.Run], key: str, index: int = 0) -> load.Run:
    """A selectbox over runs by label."""
    labels = [run.label for run in runs]
    chosen = st.selectbox(label, labels, index=min(index, len(labels) - 1), key=key)
    return runs[labels.index(chosen)]


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def downloads(table: pl.DataFrame, name: str) -> None:
    """CSV and Parquet download buttons for `table`; the bytes are made only when clicked."""
    with st.container(horizontal=True):
        st.download_button(
            "CSV",
            data=lambda: table.write_csv(),
            file_name=f"{name}.csv",
            mime="text/csv",
            key=f"{name}-csv",
            on_click="ignore",
            icon=":material/download:",
        )
        st.download_button(
            "Parquet",
            data=lambda: _parquet(table),
            file_name=f"{name}.parquet",
            mime="application/vnd.apache.parquet",
            key=f"{name}-parquet",
            on_click="ignore",
            icon=":material/download:",
        )


def chart(fig: go.Figure, table: pl.DataFrame, name: str, show_table: bool = False) -> None:
    """A Plotly chart, its table (in an expander unless `show_table`), and the table as CSV / Parquet."""
    st.plotly_chart(fig, key=f"{name}-chart")
    if show_table:
        st.dataframe(table, hide_index=True)
    else:
        with st.expander(f"Table: {name}"):
            st.dataframe(table, hide_index=True)
    downloads(table, name)
