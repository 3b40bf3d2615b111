"""Figures with intervals: bars with whiskers, curves with bands. Pure functions, no Streamlit."""

from __future__ import annotations

import html

import plotly.graph_objects as go
import polars as pl

from dashboard.charts import _hover, _layout, grouped_bars, position_axis

FAINT = 0.3  # opacity of a curve's points where fewer than a handful of answers reach


def _errors(frame: pl.DataFrame, column: str) -> dict:
    value = frame[column]
    return {
        "type": "data",
        "symmetric": False,
        "array": (frame[f"{column}_high"] - value).to_list(),
        "arrayminus": (value - frame[f"{column}_low"]).to_list(),
        "thickness": 1.2,
    }


def whisker_bars(
    frame: pl.DataFrame, x: str, ys: dict[str, str], title: str, percent: bool = False, horizontal: bool = False
) -> go.Figure:
    """charts.grouped_bars with 95 % whiskers: the frame has `<column>_low` and `<column>_high` beside each
    column of `ys`."""
    fig = grouped_bars(frame, x, ys, title + " (95 % intervals)", horizontal=horizontal)
    axis = "x" if horizontal else "y"
    for trace, column in zip(fig.data, ys, strict=True):
        trace.update({f"error_{axis}": _errors(frame, column)})
    return fig.update_layout({f"{axis}axis_tickformat": ".1%"}) if percent else fig


def whiskers_on(fig: go.Figure, trace_errors: dict[str, tuple[list, list]], axis: str = "y") -> go.Figure:
    """Add whiskers to an existing figure's traces, by trace name: (low, high) per point of the trace."""
    for trace in fig.data:
        errors = trace_errors.get(trace.name)
        if errors is None:
            continue
        low, high = errors
        values = getattr(trace, axis)
        spec = {
            "type": "data",
            "symmetric": False,
            "array": [h - v if None not in (h, v) else None for h, v in zip(high, values, strict=True)],
            "arrayminus": [v - lo if None not in (lo, v) else None for lo, v in zip(low, values, strict=True)],
        }
        trace.update({f"error_{axis}": spec})
    return fig


def band_lines(
    frame: pl.DataFrame, t: str, title: str, y_title: str, percent: bool = False, name: str = "run"
) -> go.Figure:
    """One curve per value of `name` (a run) with its 95 % band against the position `t`, on a log scale (drawn
    at t + 1, ticked with t); `frame` has the name, t, value, low, high and `few` (fewer than a handful of
    answers reach the point): there the band is cut and the points drawn faint."""
    traces = []  # as dicts, validated once by the figure (a trace added at a time is validated on its own)
    for i, ((run,), part) in enumerate(frame.group_by(name, maintain_order=True)):
        color = _palette(i)
        xs = [v + 1 for v in part[t].to_list()]
        keep = (~part["few"]).to_list()
        low = [v if k else None for v, k in zip(part["low"].to_list(), keep, strict=True)]
        high = [v if k else None for v, k in zip(part["high"].to_list(), keep, strict=True)]
        name = html.escape(str(run), quote=False)
        band = {"type": "scatter", "x": xs, "mode": "lines", "line": {"width": 0}, "showlegend": False}
        band |= {"hoverinfo": "skip", "legendgroup": name}
        traces.append({**band, "y": high})
        traces.append({**band, "y": low, "fill": "tonexty", "fillcolor": _fade(color)})
        traces.append(
            {
                "type": "scatter",
                "x": xs,
                "y": part["value"].to_list(),
                "mode": "lines+markers",
                "name": name,
                "hovertext": _hover(part),
                "legendgroup": name,
                "line": {"color": color},
                "marker": {"opacity": [1.0 if k else FAINT for k in keep]},
            }
        )
    fig = go.Figure(data=traces)
    shares = {"yaxis_tickformat": ".1%", "yaxis_rangemode": "tozero"} if percent else {}  # a share is never below 0
    fig = _layout(fig, title, xaxis_type="log", yaxis_title=y_title, **shares)
    return position_axis(fig, int(frame[t].max() or 0))


_COLORS = ("#3b6fb6", "#d0473e", "#4c9f70", "#9a6fb0", "#e0b040", "#5aa7c7", "#8c6d31", "#6b6b6b")


def _palette(i: int) -> str:
    return _COLORS[i % len(_COLORS)]


def _fade(color: str, alpha: float = 0.2) -> str:
    r, g, b = (int(color[k : k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def decile_bars(frame: pl.DataFrame) -> go.Figure:
    """Mean entropy change (aligned - base) per decile of the base side's entropy."""
    fig = go.Figure(go.Bar(x=frame["decile"].to_list(), y=frame["mean_change"].to_list(), name="aligned - base"))
    return _layout(
        fig,
        "Entropy change by base-entropy decile",
        xaxis_title="decile of the base side's entropy (0: most confident)",
        yaxis_title="mean entropy change, nats",
    )
