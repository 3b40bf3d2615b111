"""Entry point: `streamlit run dashboard/app.py` (artifacts from $TDS_ARTIFACTS_DIR or artifacts/).

Lists the runs, says which files are not complete format-v1 artifacts, holds the
run picker shared by all pages, and hands over to the page chosen in st.navigation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from compute.core.errors import one_line
from dashboard import cache, featured, load, pages, picker, ui

NAVIGATION = [
    st.Page(page.script, title=page.title, icon=page.icon, default=i == 0) for i, page in enumerate(pages.PAGES)
]
GROUP_KEY, SEARCH_KEY = "run-group", "run-search"  # session-state keys of the picker's group and search
LOG = logging.getLogger(__name__)


def state(directory: Path) -> str:
    """Why a directory lists no runs, in a few words."""
    try:
        if not directory.exists():
            return "does not exist"
        return "holds no complete artifacts" if directory.is_dir() else "is not a directory"
    except OSError as err:
        return f"cannot be read ({err.strerror})"


def run_picker(runs: list[load.Run], directory: Path) -> None:
    """The sidebar's run picker: a group and a search narrow the list; it says how many runs are shown."""
    labels = [run.label for run in runs]
    if ui.RUNS_KEY not in st.session_state:
        listed = [
            featured.Listed(
                run.label, run.artifact.name, picker.tags(run.artifact.attrs), "decoding" in run.artifact.attrs
            )
            for run in runs
        ]
        default, why = featured.default_pick(listed, featured.declared(directory))
        st.session_state[ui.RUNS_KEY], st.session_state[ui.DEFAULT_WHY_KEY] = default, (default, why)
    else:
        st.session_state[ui.RUNS_KEY] = [label for label in st.session_state[ui.RUNS_KEY] if label in labels]
    picked = st.session_state[ui.RUNS_KEY]
    found = picker.groups([(run.label, run.artifact.name, run.artifact.side_attrs, run.artifact.attrs) for run in runs])
    if len(found) > 1:
        count = lambda g: f"{g} ({len(found[g])})"  # noqa: E731
        group = st.sidebar.selectbox("Group", list(found), format_func=count, key=GROUP_KEY)
    else:
        group = picker.ALL
    query = st.sidebar.text_input("Search runs", key=SEARCH_KEY, placeholder="words in the run's label")
    candidates = picker.matching(found.get(group, labels), query)
    options = candidates + [label for label in picked if label not in candidates]  # a picked run stays picked
    st.sidebar.multiselect("Runs", options, key=ui.RUNS_KEY, help=ui.md_escape(f"Artifacts in {directory}"))
    st.sidebar.caption(f"{len(st.session_state[ui.RUNS_KEY])} of {len(labels)} runs shown")
    default, why = st.session_state.get(ui.DEFAULT_WHY_KEY, ([], ""))
    if st.session_state[ui.RUNS_KEY] == default:
        st.sidebar.caption(f"Opened on {why}.")
    if candidates and candidates != st.session_state[ui.RUNS_KEY]:
        st.sidebar.button(
            f"Show the {len(candidates)} listed",
            key="runs-show-listed",
            on_click=lambda: st.session_state.update({ui.RUNS_KEY: candidates}),
        )


def main() -> None:
    st.set_page_config(page_title="Token distribution shift", layout="wide")
    ui.new_script_run()
    directory = load.artifacts_dir()
    runs, problems = ui.all_runs()
    for problem in problems:
        st.warning(ui.md_escape(f"Skipped {problem}"), icon=":material/warning:")
    for bad_setting in (cache.bound()[1], load.wait_s()[1]):
        if bad_setting:
            st.warning(ui.md_escape(bad_setting), icon=":material/warning:")
    if not runs:
        st.info(
            ui.md_escape(f"{directory}{load.where_from()} {state(directory)}.")
            + " Make a run with `tds run compute/recipes/<recipe>.toml`; its artifact lands in the"
            + f" recipe's `out_dir`. Point the dashboard at another directory with `{load.ENV_VAR}`.",
            icon=":material/info:",
        )
        return
    run_picker(runs, directory)
    ui.definition_control()
    try:
        st.navigation(NAVIGATION).run()
    except Exception as err:  # noqa: BLE001  (the last boundary: a line for the viewer, the traceback in the log)
        LOG.exception("page failed")
        st.error(ui.md_escape(f"This page stopped: {one_line(err)}"), icon=":material/error:")


main()
