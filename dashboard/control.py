"""The template control's decomposition as tables and charts (the Template control page); no streamlit here."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

from compute.core.control import PART_LABELS, PARTS, SHIFTED_SHARE, Decomposition, format_estimate


def parts_table(d: Decomposition) -> pl.DataFrame:
    """One row per measure, one column per part: "value [low, high]"."""
    rows = [
        {"measure": measure, **{PART_LABELS[p]: format_estimate(parts[p], measure == SHIFTED_SHARE) for p in PARTS}}
        for measure, parts in d.measures.items()
    ]
    return pl.DataFrame(rows)


def parts_chart(d: Decomposition, measure: str) -> go.Figure:
    """The measure's total, parts and interaction as bars with their 95 % paired intervals as whiskers."""
    scale = 100.0 if measure == SHIFTED_SHARE else 1.0
    estimates = [d.measures[measure][p] for p in PARTS]
    values = [e.value * scale for e in estimates]
    fig = go.Figure(
        go.Bar(
            x=[PART_LABELS[p] for p in PARTS],
            y=values,
            marker_color=["#4c78a8", "#f58518", "#f58518", "#54a24b", "#54a24b", "#9d755d"],
            error_y={
                "type": "data",
                "array": [e.high * scale - v for e, v in zip(estimates, values, strict=True)],
                "arrayminus": [v - e.low * scale for e, v in zip(estimates, values, strict=True)],
            },
            hovertext=[format_estimate(e, measure == SHIFTED_SHARE) for e in estimates],
        )
    )
    unit = " (percentage points)" if measure == SHIFTED_SHARE else ""
    fig.update_layout(title=f"{measure}{unit}", height=340, margin={"t": 50, "b": 40}, showlegend=False)
    return fig
