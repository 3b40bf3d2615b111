"""Literal token display: whitespace and control characters shown as symbols in tables and labels."""

from __future__ import annotations

VISIBLE = {"\n": "↵", "\t": "→", "\r": "␍"}


def visible(text: str) -> str:
    """Plain text with newlines, tabs and carriage returns shown as symbols, for tables."""
    for raw, shown in VISIBLE.items():
        text = text.replace(raw, shown)
    return text


def bar_label(text: str, token_id: int) -> str:
    """A token as a chart label that is never blank: visible(text), spaces as ␣ where it holds nothing else, and
    ⟨id⟩ for a token with no text."""
    shown = visible(text)
    if not shown:
        return f"⟨{token_id}⟩"
    return shown.replace(" ", "␣") if not shown.strip() else shown
