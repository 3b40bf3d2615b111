"""The Experiments page's charts: accuracy (with its 95 % interval) against the share of tokens a mixed rule
inserted and against a sweep's parameter, with the pure sides as labelled reference lines, and the share of tokens
a sweep's rule counts (logit arithmetic: neither side's top-1). Accuracy and shares are drawn on 0 to 100 %."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

from compute.core.rules import RULES
from dashboard.charts import SIDE_COLORS, _layout, _text

SWEEP_AXES = {
    "alpha": "alpha (0: the base side, 1: the aligned side, above 1: what tuning changed, amplified)",
    "tokens": "k, the tokens the aligned side writes before the base side goes on",
}
FULL = [0, 1.02]  # an accuracy or share axis: 0 to 100 %, a little room for the markers at 100 %


def _error_y(part: pl.DataFrame) -> dict:
    return {
        "type": "data",
        "symmetric": False,
        "array": (part["accuracy_high"] - part["accuracy"]).to_list(),
        "arrayminus": (part["accuracy"] - part["accuracy_low"]).to_list(),
    }


def _references(fig: go.Figure, references: pl.DataFrame) -> None:
    """A dashed line per pure-side run, labelled with its run, size and accuracy."""
    for row in references.iter_rows(named=True):
        fig.add_hline(
            y=row["accuracy"],
            line_dash="dash",
            line_color=SIDE_COLORS.get(row["rule"]),
            annotation_text=_text([row["label"]])[0],
            annotation_position="top left",
        )


def accuracy_curves(points: pl.DataFrame, references: pl.DataFrame) -> go.Figure:
    """Accuracy against the share of tokens from the inserted side: one line per `curve` of `points` (run,
    parameters, share_inserted, accuracy and its interval), and the pure sides' reference lines."""
    fig = go.Figure()
    for (curve,), part in points.group_by("curve", maintain_order=True):
        fig.add_scatter(
            x=part["share_inserted"].to_list(),
            y=part["accuracy"].to_list(),
            error_y=_error_y(part),
            mode="markers" if curve == "nudging" else "lines+markers",
            name=_text([str(curve)])[0],
            text=_text(part["parameters"].to_list()),
            hovertemplate="%{text}<br>inserted %{x:.1%}, accuracy %{y:.1%}<extra></extra>",
        )
    _references(fig, references)
    highest = max(points["share_inserted"].max() or 0.0, 0.01)
    return _layout(
        fig,
        "Accuracy against the share of tokens from the inserted side",
        xaxis_title="share of tokens from the inserted side (nudging: the aligned side)",
        yaxis_title="accuracy (95 % Wilson interval)",
        xaxis_tickformat=".0%",
        yaxis_tickformat=".0%",
        xaxis_range=[0, highest * 1.05],
        yaxis_range=FULL,
    )


def sweep_accuracy(points: pl.DataFrame, references: pl.DataFrame, rule: str) -> go.Figure:
    """Accuracy against the key a rule's sweep varies (`points`: x, accuracy and its interval, parameters), with
    the pure sides' reference lines."""
    key = RULES[rule].sweep or "x"
    fig = go.Figure()
    fig.add_scatter(
        x=points["x"].to_list(),
        y=points["accuracy"].to_list(),
        error_y=_error_y(points),
        mode="lines+markers",
        name=rule,
        text=_text(points["run"].to_list()),
        hovertemplate=f"%{{text}}<br>{key} %{{x}}: accuracy %{{y:.1%}}<extra></extra>",
    )
    _references(fig, references)
    return _layout(
        fig,
        f"{rule}: accuracy against {key}",
        xaxis_title=SWEEP_AXES.get(key, key),
        yaxis_title="accuracy (95 % Wilson interval)",
        yaxis_tickformat=".0%",
        yaxis_range=FULL,
        showlegend=False,
    )


def sweep_share(points: pl.DataFrame, rule: str) -> go.Figure:
    """The share of tokens the rule counts (decoding_share: logit arithmetic's tokens neither side's top-1)
    against the key its sweep varies."""
    spec = RULES[rule]
    fig = go.Figure()
    fig.add_scatter(
        x=points["x"].to_list(),
        y=points["share_counted"].to_list(),
        mode="lines+markers",
        text=_text(points["run"].to_list()),
        hovertemplate=f"%{{text}}<br>{spec.sweep} %{{x}}: %{{y:.1%}}<extra></extra>",
    )
    return _layout(
        fig,
        f"{rule}: share of {spec.counted_as} against {spec.sweep}",
        xaxis_title=SWEEP_AXES.get(spec.sweep or "", spec.sweep),
        yaxis_title=f"share of {spec.counted_as}",
        yaxis_tickformat=".0%",
        yaxis_range=FULL,
    )
