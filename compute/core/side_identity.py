"""What makes two sides the same side: one declaration that info, the config checks, the run, the template
control, labels, Stages and Experiments all use (no torch).

A side is its aspects: the model (its source: `model` and the fields its source kind names), the adapter, the
template and the system prompt. Its identity is read from the attributes an artifact stores for it, and from a
config through the attributes a run would write for it (compute/core/side_attrs.py), so a configured side and
the artifact it wrote have one identity. Values are normalised: a path's trailing slash does not count, an
absent attribute is None (an empty system prompt is not no system prompt), and a template is its text, whether
given inline or in a file (a template file's name is a label, not what the side reads).

NOT_IDENTITY names the stored attributes that are deliberately left out. A place that needs more composes this
declaration with its own keys: forward_key adds how the weights are loaded, same_weights compares only the
weights' aspects (and dtype), and Experiments add the dataset and task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from compute.core import side_attrs, sources

if TYPE_CHECKING:
    from compute.core.config import SideConfig

Attrs = Mapping[str, object]
Identity = tuple[tuple[str | None, ...], ...]
"""One tuple of normalised values per aspect, in ASPECTS order; hashable, so it keys dicts."""

PATHS = ("model", "adapter")  # attributes whose trailing slash (or backslash) is dropped


def normalised(attrs: Attrs, name: str) -> str | None:
    """A stored attribute as identity compares it: None when absent, a path without its trailing slash."""
    if name not in attrs or attrs[name] is None:
        return None
    value = str(attrs[name])
    return value.rstrip("/\\") if name in PATHS else value


@dataclass(frozen=True)
class Aspect:
    name: str
    """How `tds info` and the labels name it."""
    attrs: tuple[str, ...]
    """The side attributes that hold it."""
    weights: bool
    """Part of the weights (model, adapter) rather than of the context the weights read (template, system)."""
    reads: Callable[[Attrs], tuple[str | None, ...]] | None = None
    """Its value from a side's attributes, where it is not simply the normalised `attrs`."""

    def value(self, attrs: Attrs) -> tuple[str | None, ...]:
        if self.reads is not None:
            return self.reads(attrs)
        return tuple(normalised(attrs, name) for name in self.attrs)


def _template_text(attrs: Attrs) -> tuple[str | None, ...]:
    """The template's text: the file's content (template_text) where a file gave it, else `template` itself
    ("chat" or the inline format string)."""
    return (normalised(attrs, "template_text") or normalised(attrs, "template"),)


ASPECTS: tuple[Aspect, ...] = (
    Aspect("model", ("model", *sources.NAMES), weights=True),
    Aspect("adapter", ("adapter", "adapter_revision"), weights=True),
    Aspect("template", ("template", "template_text"), weights=False, reads=_template_text),
    Aspect("system prompt", ("system",), weights=False),
)

CONTEXT = tuple(aspect.name for aspect in ASPECTS if not aspect.weights)
"""The aspects a template control crosses (what a cell takes from the side whose template it uses)."""

NOT_IDENTITY = {
    "dtype": "how the weights were loaded, not which: Stages follow one model across dtypes (forward_key and "
    "same_weights compare it where the numbers must match)",
    "package_version": "a packaged model's version, a fact recorded beside its name",
    "adapter_sha256": "a check of the adapter's files for tds check; artifacts before it lack it, which would "
    "split one adapter in two",
}


def in_words(aspects: tuple[Aspect, ...]) -> str:
    """ "model, adapter, template and system prompt"."""
    names = [aspect.name for aspect in aspects]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def identity(attrs: Attrs) -> Identity:
    """A side's identity from its stored attributes (an artifact's side_attrs[side])."""
    return tuple(aspect.value(attrs) for aspect in ASPECTS)


def config_identity(cfg: SideConfig, artifact_dir: Path) -> Identity:
    """A configured side's identity: that of the attributes a run writing to `artifact_dir` records for it."""
    return identity(side_attrs.described(cfg, artifact_dir))


def differences(a: Attrs, b: Attrs) -> list[str]:
    """The names of the aspects in which two sides' stored attributes differ, in ASPECTS order ([]: same side)."""
    return [aspect.name for aspect in ASPECTS if aspect.value(a) != aspect.value(b)]


def same_weights(a: Attrs, b: Attrs) -> bool:
    """Whether two stored sides ran the same weights in the same dtype (their templates aside)."""
    return a.get("dtype") == b.get("dtype") and all(
        aspect.value(a) == aspect.value(b) for aspect in ASPECTS if aspect.weights
    )


def forward_key(cfg: SideConfig, artifact_dir: Path) -> tuple[object, ...]:
    """Configured sides with equal keys give the same numbers: one identity, loaded alike (dtype, device)."""
    return (config_identity(cfg, artifact_dir), cfg.dtype, cfg.device, repr(cfg.device_map))
