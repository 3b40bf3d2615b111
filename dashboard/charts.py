"""Pure functions: a small frame in, a Plotly figure out. No Streamlit here."""

from __future__ import annotations

import html

import plotly.graph_objects as go
import polars as pl

CATEGORY_NAMES = ("unshifted", "marginal", "shifted")
CATEGORY_COLORS = {"unshifted": "#4c9f70", "marginal": "#e0b040", "shifted": "#d0473e"}
SIDE_COLORS = {"aligned": "#3b6fb6", "base": "#9a6fb0"}


def _text(values: list) -> list:
    """Plotly reads <b>, <br>, <a> and entities in labels: escape text so it shows literally."""
    return [html.escape(v, quote=False) if isinstance(v, str) else v for v in values]


def _layout(fig: go.Figure, title: str, **kwargs) -> go.Figure:
    fig.update_layout(title=title, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend_title_text="", **kwargs)
    return fig


def shares_bars(frame: pl.DataFrame, label: str = "run") -> go.Figure:
    """Stacked horizontal bars of share_unshifted / share_marginal / share_shifted, one bar per `label`."""
    fig = go.Figure()
    for name in CATEGORY_NAMES:
        fig.add_bar(
            y=_text(frame[label].to_list()),
            x=frame[f"share_{name}"].to_list(),
            name=name,
            orientation="h",
            marker_color=CATEGORY_COLORS[name],
        )
    return _layout(
        fig,
        "Shift categories (share of positions)",
        barmode="stack",
        xaxis_tickformat=".0%",
        yaxis_autorange="reversed",
    )


def grouped_bars(frame: pl.DataFrame, x: str, ys: dict[str, str], title: str, log_y: bool = False) -> go.Figure:
    """Grouped bars: one bar per column in `ys` (column -> legend name) for each value of `x`."""
    fig = go.Figure()
    for column, name in ys.items():
        fig.add_bar(x=_text(frame[x].to_list()), y=frame[column].to_list(), name=html.escape(name, quote=False))
    return _layout(fig, title, barmode="group", yaxis_type="log" if log_y else "linear")


def bars(frame: pl.DataFrame, x: str, y: str, color: str, title: str, y_title: str, percent: bool = False) -> go.Figure:
    """Grouped bars: for each value of `x`, one bar per value of `color`."""
    fig = go.Figure()
    for (name,), part in frame.group_by(color, maintain_order=True):
        fig.add_bar(x=_text(part[x].to_list()), y=part[y].to_list(), name=html.escape(str(name), quote=False))
    return _layout(fig, title, barmode="group", yaxis_title=y_title, yaxis_tickformat=".1%" if percent else None)


def lines(
    frame: pl.DataFrame,
    x: str,
    y: str,
    color: str,
    title: str,
    y_title: str,
    percent: bool = False,
    log_x: bool = False,
    markers: bool = True,
) -> go.Figure:
    """One line per value of `color`; `log_x` spreads out the start of a long-tailed x; lines only without
    `markers` (many runs)."""
    fig = go.Figure()
    for (name,), part in frame.group_by(color, maintain_order=True):
        fig.add_scatter(
            x=_text(part[x].to_list()),
            y=part[y].to_list(),
            mode="lines+markers" if markers else "lines",
            name=html.escape(str(name), quote=False),
        )
    return _layout(
        fig,
        title,
        xaxis_title=x + (" (log scale)" if log_x else ""),
        xaxis_type="log" if log_x else "linear",
        yaxis_title=y_title,
        yaxis_tickformat=".1%" if percent else None,
    )


def topk_bars(frame: pl.DataFrame) -> go.Figure:
    """Horizontal bars of each side's top-k probabilities; `frame` has side, token, prob."""
    fig = go.Figure()
    for (side,), part in frame.group_by("side", maintain_order=True):
        fig.add_bar(
            y=_text(part["token"].to_list()),
            x=part["prob"].to_list(),
            name=str(side),
            orientation="h",
            marker_color=SIDE_COLORS.get(str(side)),
        )
    return _layout(fig, "Top-k next tokens", barmode="group", yaxis_autorange="reversed", xaxis_title="probability")


def heatmap(frame: pl.DataFrame, x: str, y: str, z: str, title: str, order: tuple[str, ...]) -> go.Figure:
    """A labelled heatmap of `z` over the values `order` of `x` and `y`."""
    xs = ys = list(order)
    cells = {(r[x], r[y]): r[z] for r in frame.iter_rows(named=True)}
    values = [[cells.get((xv, yv), 0) for xv in xs] for yv in ys]
    fig = go.Figure(
        go.Heatmap(x=_text([str(v) for v in xs]), y=_text([str(v) for v in ys]), z=values, texttemplate="%{z}")
    )
    return _layout(fig, title, xaxis_title=x, yaxis_title=y, yaxis_autorange="reversed")


def gamma_curves(frame: pl.DataFrame) -> go.Figure:
    """The nudging paper's observation: per run (`run`), share_of_shifted against share_uncertain over γ, with
    the diagonal a base uncertainty unrelated to the shifts would give."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line_dash="dot", line_color="gray", name="no relation")
    for (run,), part in frame.group_by("run", maintain_order=True):
        fig.add_scatter(
            x=part["share_uncertain"].to_list(),
            y=part["share_of_shifted"].to_list(),
            mode="lines+markers",
            name=html.escape(str(run), quote=False),
            customdata=part["gamma"].to_list(),
            hovertemplate="γ %{customdata}: %{x:.1%} of positions hold %{y:.1%} of the shifted ones<extra></extra>",
        )
    return _layout(
        fig,
        "Where the base side is unsure (top-1 probability below γ) vs where the shifts are",
        xaxis_title="share of positions with base top-1 probability < γ",
        yaxis_title="share of the shifted positions among them",
        xaxis_tickformat=".0%",
        yaxis_tickformat=".0%",
        xaxis_range=[0, 1],
        yaxis_range=[0, 1.02],
    )
