"""Template control: a 2x2 of {aligned, base weights} x {aligned, base template} over one answer set, decomposed."""

from __future__ import annotations

import streamlit as st

from compute.core.control import CELL_LABELS, SHIFTED_SHARE, control_groups, decompose, format_estimate
from dashboard import control, load, ui
from dashboard.cache import cached


@cached
def decomposition(keys: tuple[load.RunKey, ...], roles: tuple[str, ...]):
    """The decomposition of one control, from its five artifacts (keys, in the order of `roles`)."""
    runs, _ = load.open_runs(list(keys))
    return decompose(dict(zip(roles, (run.artifact for run in runs), strict=True)))


def render() -> None:
    """Draw the page."""
    st.header("Template control: the weights' part and the template's part")
    runs, _ = ui.all_runs()
    by_artifact = {id(run.artifact): run for run in runs}
    groups = control_groups([run.artifact for run in runs])
    if not groups:
        st.info(
            'No complete template control among the runs: a run with `control = "template"` writes five pair '
            "artifacts (NAME-total, NAME-weights-…, NAME-template-…); see docs/control.md."
        )
        st.stop()
    name = st.selectbox("Control", sorted(groups))
    roles = tuple(sorted(groups[name]))
    d = decomposition(tuple(by_artifact[id(groups[name][role])].key for role in roles), roles)
    st.caption(
        f"{d.examples} examples, {d.positions:,} positions, one answer set scored under four cells. Each part is the "
        "difference between its pair's cells (the shifted share: base cell minus aligned cell; log P(o_t): aligned "
        "minus base; KL: the pair's own mean KL); interaction = weights (aligned template) − weights (base template). "
        "Whiskers: 95 % paired bootstrap intervals over examples."
    )
    if d.weights_equal:
        st.info(
            "Both sides have the same weights: the weights' parts are zero by construction; the shift is all template."
        )
    st.dataframe(control.parts_table(d), hide_index=True)
    columns = st.columns(len(d.measures))
    for column, measure in zip(columns, d.measures, strict=True):
        with column:
            st.plotly_chart(control.parts_chart(d, measure), key=f"control-{measure}")
    for measure, paths in d.template_share.items():
        shares = "; ".join(f"via {path} {format_estimate(e, percent=True)}" for path, e in paths.items())
        st.markdown(ui.md_escape(f"Template's share of the total ({measure}): {shares}"))
    with st.expander("The four cells"):
        st.dataframe(
            [
                {"cell": label, **{m: format_estimate(d.cells[m][cell], m == SHIFTED_SHARE) for m in d.cells}}
                for cell, label in CELL_LABELS.items()
            ],
            hide_index=True,
        )
