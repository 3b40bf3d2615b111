"""Run labels that say what a run is: its name and its pair of sides, e.g.
"gemma-270m-urial-vs-zeroshot · gemma-3-270m-q4_k_m: urial vs ‘# Query:↵{instruction}…’".

Pure functions over the artifact's attributes; every piece is made printable (newlines as ↵, other control
characters as �) so a label is one line whatever a file holds. Where labels show as Markdown the caller escapes them.
"""

from __future__ import annotations

from pathlib import PurePath

from compute.core import side_identity
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
    """ "+name" for a side with a PEFT adapter (its folder's or hub id's last part, and @revision where given),
    "no adapter" without."""
    adapter = str(attrs.get("adapter", "")).rstrip("/\\")
    if not adapter:
        return "no adapter"
    revision = f"@{printable(str(attrs['adapter_revision']))}" if "adapter_revision" in attrs else ""
    return f"+{printable(PurePath(adapter).name or adapter)}{revision}"


def system_name(attrs: dict[str, object]) -> str:
    """The side's system prompt: its start in quotes after "system", or "no system prompt"."""
    system = attrs.get("system")
    if system is None:
        return "no system prompt"
    shown = printable(str(system))
    return f"system ‘{shown[:TEMPLATE_WIDTH]}{'…' if len(shown) > TEMPLATE_WIDTH else ''}’"


NAMED = {"model": model_name, "adapter": adapter_name, "template": template_name, "system prompt": system_name}
"""How a side reads in each aspect of its identity (compute/core/side_identity.py)."""


def aspect_name(aspect: str, attrs: dict[str, object]) -> str:
    """How a side reads in one aspect; an aspect without an entry in NAMED reads as its name and stored values."""
    if aspect in NAMED:
        return NAMED[aspect](attrs)
    held = next(a.attrs for a in side_identity.ASPECTS if a.name == aspect)
    return f"{aspect} {' '.join(printable(str(attrs[name])) for name in held if name in attrs) or 'none'}"


def differences(attrs: dict[str, object], other: dict[str, object]) -> list[str]:
    """How this side reads where it differs from the other: each aspect of its identity but the model (the pair
    names that) where the two sides differ in it."""
    return [aspect_name(aspect, attrs) for aspect in side_identity.differences(attrs, other) if aspect != "model"]


def variant(attrs: dict[str, object], other: dict[str, object]) -> str:
    """What sets a side apart from the other on one model: the first aspect (adapter, template, system prompt, ...)
    that differs, the others in parentheses; its template where none differs."""
    found = differences(attrs, other)
    if not found:
        return template_name(attrs)
    return found[0] + (f" ({', '.join(found[1:])})" if found[1:] else "")


def full_model_name(attrs: dict[str, object]) -> str:
    """The model as stored: its hub id, path or package, GGUF file and @revision."""
    revision = f"@{attrs['revision']}" if "revision" in attrs else ""
    return printable(" ".join(filter(None, (str(attrs.get("model", "?")), str(attrs.get("gguf_file", "")), revision))))


def pair(side_attrs: dict[str, dict[str, object]]) -> str:
    """What the run compares: "model: aligned variant vs base variant" (template or adapter) on one model, or both
    models when they differ (as stored where their short names read alike)."""
    aligned, base = side_attrs["aligned"], side_attrs["base"]
    if "model" not in side_identity.differences(aligned, base):
        return f"{model_name(aligned)}: {variant(aligned, base)} vs {variant(base, aligned)}"
    name = model_name if model_name(aligned) != model_name(base) else full_model_name
    return f"{name(aligned)} ({template_name(aligned)}) vs {name(base)} ({template_name(base)})"


def run_labels(runs: list[tuple[str, str, dict[str, dict[str, object]]]]) -> list[str]:
    """One label per (file name, run name, side attributes): "name · pair", with the file name added to
    labels that would otherwise repeat."""
    labels = [f"{printable(name)} · {pair(sides)}" for _, name, sides in runs]
    return [
        f"{label} ({printable(file)})" if labels.count(label) > 1 else label
        for label, (file, _, _) in zip(labels, runs, strict=True)
    ]
