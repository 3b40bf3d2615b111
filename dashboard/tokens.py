"""Literal token display: whitespace and control characters shown as symbols in tables and labels."""

from __future__ import annotations

VISIBLE = {"\n": "↵", "\t": "→", "\r": "␍"}


def visible(text: str) -> str:
    """Plain text with newlines, tabs and carriage returns shown as symbols, for tables."""
    for raw, shown in VISIBLE.items():
        text = text.replace(raw, shown)
    return text
