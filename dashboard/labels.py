"""Run labels that say what a run is: its name and its pair of sides, e.g.
"gemma-270m-urial-vs-zeroshot · gemma-3-270m-q4_k_m: urial vs ‘# Query:↵{instruction}…’".

Pure functions over the artifact's attributes; every piece is made printable (newlines as ↵, other control
characters as �) so a label is one line whatever a file holds. Where labels show as Markdown the caller escapes them.
"""

from __future__ import annotations

from pathlib import PurePath

from dashboard.tokens import visible

TEMPLATE_WIDTH = 24


def printable(text: str) -> str:
    """One line of text: ↵ → ␍ for newline, tab and return, � for any other control character."""
    return "".join(c if c.isprintable() else "\ufffd" for c in visible(text))


def model_name(attrs: dict[str, object]) -> str:
    """The model's short name: the GGUF file's stem, else the last part of the hub id, path or package."""
    gguf = str(attrs.get("gguf_file", ""))
    if gguf:
        return printable(PurePath(gguf).stem)
    model = str(attrs.get("model", "")).removeprefix("pypi:").rstrip("/\\")
    return printable(PurePath(model).name or model or "?")


def template_name(attrs: dict[str, object]) -> str:
    """The template: chat, a template file's stem, or the start of an inline template in quotes."""
    template = str(attrs.get("template", ""))
    if template == "chat":
        return "chat"
    if "template_text" in attrs:
        return printable(PurePath(template).stem)
    shown = printable(template)
    return f"‘{shown[:TEMPLATE_WIDTH]}{'…' if len(shown) > TEMPLATE_WIDTH else ''}’"


def adapter_name(attrs: dict[str, object]) -> str:
    """ "+name" for a side with a PEFT adapter (its folder's or hub id's last part), "no adapter" without."""
    adapter = str(attrs.get("adapter", "")).rstrip("/\\")
    return f"+{printable(PurePath(adapter).name or adapter)}" if adapter else "no adapter"


def variant(attrs: dict[str, object], other: dict[str, object]) -> str:
    """What sets a side apart from the other on one model: its adapter where the adapters differ (and its
    template too where those differ as well), else its template."""
    if attrs.get("adapter") == other.get("adapter"):
        return template_name(attrs)
    if template_name(attrs) == template_name(other):
        return adapter_name(attrs)
    return f"{adapter_name(attrs)} ({template_name(attrs)})"


def pair(side_attrs: dict[str, dict[str, object]]) -> str:
    """What the run compares: "model: aligned variant vs base variant" (template or adapter), or both models
    when they differ."""
    aligned, base = side_attrs["aligned"], side_attrs["base"]
    if model_name(aligned) == model_name(base):
        return f"{model_name(aligned)}: {variant(aligned, base)} vs {variant(base, aligned)}"
    return f"{model_name(aligned)} ({template_name(aligned)}) vs {model_name(base)} ({template_name(base)})"


def run_labels(runs: list[tuple[str, str, dict[str, dict[str, object]]]]) -> list[str]:
    """One label per (file name, run name, side attributes): "name · pair", with the file name added to
    labels that would otherwise repeat."""
    labels = [f"{printable(name)} · {pair(sides)}" for _, name, sides in runs]
    return [
        f"{label} ({printable(file)})" if labels.count(label) > 1 else label
        for label, (file, _, _) in zip(labels, runs, strict=True)
    ]
