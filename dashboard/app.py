"""Entry point: `streamlit run dashboard/app.py` (artifacts from $TDS_ARTIFACTS_DIR or artifacts/).

Lists the runs, says which files are not complete format-v1 artifacts, holds the
run picker shared by all pages, and hands over to the page chosen in st.navigation.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import load, ui  # noqa: E402

PAGES = [
    st.Page("app_pages/overview.py", title="Overview", icon=":material/bar_chart:", default=True),
    st.Page("app_pages/positions.py", title="Positions", icon=":material/show_chart:"),
    st.Page("app_pages/token_types.py", title="Token types", icon=":material/category:"),
    st.Page("app_pages/examples.py", title="Examples", icon=":material/article:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
]
MAX_DEFAULT_RUNS = 8
LOG = logging.getLogger(__name__)


def state(directory: Path) -> str:
    """Why a directory lists no runs, in a few words."""
    try:
        if not directory.exists():
            return "does not exist"
        return "holds no complete artifacts" if directory.is_dir() else "is not a directory"
    except OSError as err:
        return f"cannot be read ({err.strerror})"


def main() -> None:
    st.set_page_config(page_title="Token distribution shift", layout="wide")
    directory = load.artifacts_dir()
    runs, problems = ui.all_runs()
    for problem in problems:
        st.warning(ui.md_escape(f"Skipped {problem}"), icon=":material/warning:")
    if not runs:
        st.info(
            ui.md_escape(f"{directory} {state(directory)}.")
            + " Make a run with `python -m compute run compute/recipes/<recipe>.toml`; its artifact lands in the"
            + f" recipe's `out_dir`. Point the dashboard at another directory with `{load.ENV_VAR}`.",
            icon=":material/info:",
        )
        return
    labels = [run.label for run in runs]
    if ui.RUNS_KEY not in st.session_state:
        st.session_state[ui.RUNS_KEY] = labels[:MAX_DEFAULT_RUNS]
    else:
        st.session_state[ui.RUNS_KEY] = [label for label in st.session_state[ui.RUNS_KEY] if label in labels]
    st.sidebar.multiselect("Runs", labels, key=ui.RUNS_KEY, help=ui.md_escape(f"Artifacts in {directory}"))
    ui.definition_control()
    try:
        st.navigation(PAGES).run()
    except Exception as err:  # noqa: BLE001  (the last boundary: a line for the viewer, the traceback in the log)
        LOG.exception("page failed")
        st.error(ui.md_escape(f"This page stopped: {load.one_line(err)}"), icon=":material/error:")


main()
