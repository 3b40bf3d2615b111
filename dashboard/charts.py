"""Pure functions: a small frame in, a Plotly figure out. No Streamlit here."""

from __future__ import annotations

import html

import plotly.graph_objects as go
import polars as pl

CATEGORY_NAMES = ("unshifted", "marginal", "shifted")
CATEGORY_COLORS = {"unshifted": "#4c9f70", "marginal": "#e0b040", "shifted": "#d0473e"}
SIDE_COLORS = {"aligned": "#3b6fb6", "base": "#9a6fb0"}
HOVER = "run"  # a frame column with each row's long identity (the run's label): shown on hover; axes show short_name
LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.12, "xanchor": "left", "x": 0}


def _text(values: list) -> list:
    """Plotly reads <b>, <br>, <a> and entities in labels: escape text so it shows literally."""
    return [html.escape(v, quote=False) if isinstance(v, str) else v for v in values]


LEGEND_ROW_PX, LEGEND_ROW_WIDTH, CHAR_PX = 22, 700, 7  # a legend row's height; the width a row fills, estimated


def legend_rows(names: list[str]) -> int:
    """About how many rows a horizontal legend of `names` takes (entries of ~CHAR_PX a character plus a swatch,
    rows of LEGEND_ROW_WIDTH px)."""
    rows, used = 0, LEGEND_ROW_WIDTH
    for name in names:
        width = 40 + CHAR_PX * len(name)
        if used + width > LEGEND_ROW_WIDTH:
            rows, used = rows + 1, 0
        used += width
    return rows


def _layout(fig: go.Figure, title: str, **kwargs) -> go.Figure:
    """Title, tight margins, and the legend below the plot (a legend beside it takes the plot's width); a chart
    with a long legend grows, so that the plot keeps two thirds of its height. One layout update (each costs
    Plotly a validation pass)."""
    entries = [str(t.name) for t in fig.data if t.showlegend is not False and t.name]
    height = kwargs.pop("height", fig.layout.height)
    if len(entries) > 1 and height is None:
        below = 60 + LEGEND_ROW_PX * legend_rows(entries)  # tick labels, axis title, legend
        height = max(450, 3 * below + 40)
    plot_height = (height or 450) - 110  # less the title, tick labels and axis title, about
    legend = {**LEGEND_BELOW, "title": {"text": ""}, "y": -min(0.5, 48 / max(plot_height, 80))}  # below the ticks
    margin = {"l": 10, "r": 10, "t": 40, "b": 10}
    return fig.update_layout(title=title, margin=margin, legend=legend, height=height, **kwargs)


def _hover(frame: pl.DataFrame) -> list | None:
    """The rows' long identities for hover text, where the frame has them."""
    return _text(frame[HOVER].to_list()) if HOVER in frame.columns else None


def share_axis(values: list[float | None]) -> dict[str, object]:
    """A share axis that never runs below 0 %: Plotly centres an all-zero axis on 0 (-100 % to 100 %)."""
    top = max((v for v in values if v is not None and v == v), default=0.0)
    return {"rangemode": "tozero"} if top > 0 else {"range": [0, 1]}


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
            hovertext=_hover(frame),
        )
    return _layout(
        fig,
        "Shift categories (share of positions)",
        barmode="stack",
        height=max(260, 140 + 26 * frame.height),
        xaxis_tickformat=".0%",
        yaxis_autorange="reversed",
    )


def grouped_bars(
    frame: pl.DataFrame, x: str, ys: dict[str, str], title: str, log_y: bool = False, horizontal: bool = False
) -> go.Figure:
    """Grouped bars: one bar per column in `ys` (column -> legend name) for each value of `x`; `horizontal` lays
    the bars along the x axis with `x`'s values down the side, in the frame's order (for names, which do not fit
    under a bar)."""
    fig = go.Figure()
    for column, name in ys.items():
        labels, values = _text(frame[x].to_list()), frame[column].to_list()
        fig.add_bar(
            x=values if horizontal else labels,
            y=labels if horizontal else values,
            orientation="h" if horizontal else "v",
            name=html.escape(name, quote=False),
            hovertext=_hover(frame),
        )
    if horizontal:
        height = 140 + 16 * frame.height * len(ys)
        return _layout(
            fig,
            title,
            barmode="group",
            xaxis_type="log" if log_y else "linear",
            yaxis_autorange="reversed",
            height=max(300, height),
        )
    return _layout(fig, title, barmode="group", yaxis_type="log" if log_y else "linear")


def bars(frame: pl.DataFrame, x: str, y: str, color: str, title: str, y_title: str, percent: bool = False) -> go.Figure:
    """Grouped bars: for each value of `x`, one bar per value of `color`."""
    fig = go.Figure(
        data=[
            {
                "type": "bar",
                "x": _text(part[x].to_list()),
                "y": part[y].to_list(),
                "name": html.escape(str(name), quote=False),
                "hovertext": _hover(part),
            }
            for (name,), part in frame.group_by(color, maintain_order=True)
        ]
    )  # one validation of every trace (a trace added at a time is validated on its own, one per run)
    if percent:
        return _layout(
            fig,
            title,
            barmode="group",
            yaxis_title=y_title,
            yaxis_tickformat=".1%",
            yaxis=share_axis(frame[y].to_list()),
        )
    return _layout(fig, title, barmode="group", yaxis_title=y_title)


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
    fig = go.Figure(
        data=[
            {
                "type": "scatter",
                "x": _text(part[x].to_list()),
                "y": part[y].to_list(),
                "mode": "lines+markers" if markers else "lines",
                "name": html.escape(str(name), quote=False),
                "hovertext": _hover(part),
            }
            for (name,), part in frame.group_by(color, maintain_order=True)
        ]
    )  # one validation of every trace, as in bars()
    return _layout(
        fig,
        title,
        xaxis_title=x + (" (log scale)" if log_x else ""),
        xaxis_type="log" if log_x else "linear",
        yaxis_title=y_title,
        yaxis_tickformat=".1%" if percent else None,
        **({"yaxis": share_axis(frame[y].to_list())} if percent else {}),
    )


POSITION_TICKS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)


def position_lines(
    frame: pl.DataFrame,
    t: str,
    y: str,
    color: str,
    title: str,
    y_title: str,
    percent: bool = False,
    markers: bool = True,
) -> go.Figure:
    """One line per value of `color` against the position `t` in the answer (0, 1, ...) on a log scale: drawn at
    t + 1, the ticks labelled with t itself (0, 1, 2, 5, 10, 20, ...)."""
    plotted = frame.with_columns((pl.col(t) + 1).alias("_x"))
    fig = lines(plotted, "_x", y, color, title, y_title, percent, log_x=True, markers=markers)
    return position_axis(fig, int(frame[t].max() or 0))


def position_axis(fig: go.Figure, last: int) -> go.Figure:
    """A log x axis of positions drawn at t + 1, ticked with t itself (0, 1, 2, 5, 10, 20, ...) up to `last`."""
    ticks = [v for v in POSITION_TICKS if v <= last] or [0]
    return fig.update_layout(
        xaxis_title="position t in the answer (log scale)",
        xaxis_tickvals=[v + 1 for v in ticks],
        xaxis_ticktext=[str(v) for v in ticks],
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


def heatmap(
    frame: pl.DataFrame,
    x: str,
    y: str,
    z: str,
    title: str,
    order: tuple[str, ...],
    x_title: str | None = None,
    y_title: str | None = None,
) -> go.Figure:
    """A labelled heatmap of `z` over the values `order` of `x` and `y` (axis titles: the column names, unless
    given)."""
    xs = ys = list(order)
    cells = {(r[x], r[y]): r[z] for r in frame.iter_rows(named=True)}
    values = [[cells.get((xv, yv), 0) for xv in xs] for yv in ys]
    fig = go.Figure(
        go.Heatmap(x=_text([str(v) for v in xs]), y=_text([str(v) for v in ys]), z=values, texttemplate="%{z}")
    )
    return _layout(fig, title, xaxis_title=x_title or x, yaxis_title=y_title or y, yaxis_autorange="reversed")


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


TOKEN_LINE = 96  # characters per line of the token map


def token_layout(texts: list[str], width: int = TOKEN_LINE) -> tuple[list[int], list[int], list[int]]:
    """Where each token of an answer goes in lines of `width` characters: its start, width (at least 1) and line.
    A token that would overrun a line starts the next one; a token holding a newline ends its line."""
    starts, widths, rows = [], [], []
    x = row = 0
    for text in texts:
        w = max(1, len(text.replace("\n", "↵")))
        if x > 0 and x + w > width:
            x, row = 0, row + 1
        starts.append(x)
        widths.append(w)
        rows.append(row)
        x += w
        if "\n" in text:
            x, row = 0, row + 1
    return starts, widths, rows


def token_map(
    texts: list[str], colors: list[str], hovers: list[str], legend: list[tuple[str, str]], selected: int | None = None
) -> go.Figure:
    """An answer token by token as boxes on lines (monospace text, ↵ newline, → tab), coloured by `colors`, with
    `hovers` on hover and `legend` (label, colour) above: click a box to select its token (trace 0's point index
    is the position t)."""
    starts, widths, rows = token_layout(texts)
    shown = [t.replace("\n", "↵").replace("\t", "→").replace("\r", "␍") for t in texts]
    lines = (rows[-1] + 1) if rows else 1
    edge = ["#222" if i == selected else "rgba(128,128,128,.6)" for i in range(len(texts))]
    fig = go.Figure(
        go.Bar(
            base=starts,
            x=widths,
            y=rows,
            orientation="h",
            width=0.82,
            marker={
                "color": colors,
                "line": {"color": edge, "width": [3 if i == selected else 1 for i in range(len(edge))]},
            },
            text=_text(shown),
            textposition="inside",
            insidetextanchor="start",
            constraintext="none",
            textangle=0,
            textfont={"family": "ui-monospace, Menlo, Consolas, monospace", "size": 13, "color": "#111"},
            hovertext=_text(hovers),
            hoverinfo="text",
            showlegend=False,
        )
    )
    for label, color in legend:  # legend entries only: no points
        fig.add_bar(x=[None], y=[None], name=html.escape(label, quote=False), marker_color=color, orientation="h")
    return fig.update_layout(
        height=80 + 28 * lines,
        margin={"l": 0, "r": 0, "t": 44, "b": 4},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "left", "x": 0},
        xaxis={"visible": False, "range": [-0.5, TOKEN_LINE + 0.5], "fixedrange": True},
        yaxis={"visible": False, "range": [lines - 0.45, -0.65], "fixedrange": True},
        plot_bgcolor="rgba(0,0,0,0)",
        dragmode=False,
        clickmode="event+select",
    )


def clicked_token(event: object) -> int | None:
    """The position t of the token clicked on a token map (st.plotly_chart's selection event), None if none."""
    points = event.get("selection", {}).get("points", []) if isinstance(event, dict) else []
    found = [p.get("point_index") for p in points if p.get("curve_number") == 0]
    return int(found[0]) if found and found[0] is not None else None
