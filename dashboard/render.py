"""HTML for an answer token by token. Every piece of token text is escaped here, so the result is safe
for st.html and shows the text literally (whitespace made visible, nothing read as markup)."""

from __future__ import annotations

import html

from compute.core.statistics import SIDE_NAMES
from dashboard.charts import CATEGORY_COLORS, CATEGORY_NAMES, SIDE_COLORS

TOKEN_STYLE = (
    "white-space:pre-wrap;font-family:ui-monospace,monospace;border:1px solid rgba(128,128,128,.45);"
    "border-radius:3px;padding:0 1px;margin:0 1px 3px 0;display:inline-block;min-width:.5em;"
)
NEWLINE, TAB, RETURN = "↵", "→", "␍"


def token_html(text: str, background: str, title: str) -> str:
    """One token as an escaped, bordered span (spaces kept, so the border shows them); each newline is
    shown as ↵ and followed by a real line break."""
    shown = text.replace("\n", NEWLINE).replace("\t", TAB).replace("\r", RETURN)
    span = (
        f'<span style="{TOKEN_STYLE}background:{background}" title="{html.escape(title, quote=True)}">'
        f"{html.escape(shown, quote=True)}</span>"
    )
    return span + "<br>" * text.count("\n")


def category_color(category: int) -> str:
    return CATEGORY_COLORS[CATEGORY_NAMES[category]] + "55"


MIXED_COLOR = "#999999"  # a logit rule's token that is neither side's top-1 (/positions/source 2)


def side_color(source: int) -> str:
    """The colour of the side that emitted a token (0 aligned, 1 base, as on the top-k chart; 2 mixed: grey)."""
    return (SIDE_COLORS[SIDE_NAMES[source]] if source < len(SIDE_NAMES) else MIXED_COLOR) + "55"


def emitted_by(source: int) -> str:
    """Whose token it is, in words: "the aligned side", "the base side", or the mixture (source 2)."""
    return f"the {SIDE_NAMES[source]} side" if source < len(SIDE_NAMES) else "the mixture (neither side's top-1)"


def scale_color(value: float, top: float) -> str:
    """White to red as a divergence goes from 0 to `top` nats."""
    alpha = min(max(value / top, 0.0), 1.0) if top > 0 else 0.0
    return f"rgba(208,71,62,{alpha:.2f})"


def answer_html(texts: list[str], backgrounds: list[str], titles: list[str]) -> str:
    """The whole answer: one span per token."""
    spans = "".join(token_html(*piece) for piece in zip(texts, backgrounds, titles, strict=True))
    return f'<div style="line-height:1.9">{spans}</div>'


def legend_html(items: list[tuple[str, str]]) -> str:
    """A row of colour swatches with their (escaped) labels."""
    return " ".join(
        f'<span style="{TOKEN_STYLE}background:{color}">{html.escape(label)}</span>' for label, color in items
    )
