"""Where a side's weights come from: one row per kind of source, first match wins.

A row says when it applies to a side's config, what `from_pretrained` is given
(a path or hub id and its keyword arguments) and what the artifact records
about the source besides `model`. A PEFT adapter is not a source: it goes on
top of any of them (compute/engine/model.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compute.core import packaged
from compute.core.config import PACKAGE_PREFIX, SideConfig


@dataclass(frozen=True)
class SourceKind:
    name: str
    applies: Callable[[SideConfig], bool]
    location: Callable[[SideConfig], tuple[str, dict[str, Any]]]
    """The first argument of from_pretrained and its keyword arguments (may prepare files, e.g. dequantise)."""
    attrs: Callable[[SideConfig], dict[str, str]]
    """What the artifact records about this source, besides `model`."""


def _package(cfg: SideConfig) -> str:
    return cfg.model.removeprefix(PACKAGE_PREFIX)


def _given(*keys: str) -> Callable[[SideConfig], dict[str, str]]:
    """The config fields among `keys` that are set, by name."""
    return lambda cfg: {key: getattr(cfg, key) for key in keys if getattr(cfg, key)}


SOURCE_KINDS: tuple[SourceKind, ...] = (
    SourceKind(
        name="packaged model",
        applies=lambda cfg: cfg.model.startswith(PACKAGE_PREFIX),
        location=lambda cfg: (str(packaged.local_copy(_package(cfg))), {}),
        attrs=lambda cfg: {
            "package_version": packaged.check_installed(_package(cfg)),
            "gguf_file": packaged.lookup(_package(cfg)).gguf_file,
        },
    ),
    SourceKind(
        name="GGUF file",
        applies=lambda cfg: bool(cfg.gguf_file),
        location=lambda cfg: (cfg.model, _given("gguf_file", "revision")(cfg)),
        attrs=_given("gguf_file", "revision"),
    ),
    SourceKind(
        name="local folder",
        applies=lambda cfg: Path(cfg.model).is_dir(),
        location=lambda cfg: (cfg.model, {}),
        attrs=_given(),
    ),
    SourceKind(
        name="hub id",
        applies=lambda cfg: True,
        location=lambda cfg: (cfg.model, _given("revision")(cfg)),
        attrs=_given("revision"),
    ),
)


def kind_of(cfg: SideConfig) -> SourceKind:
    return next(kind for kind in SOURCE_KINDS if kind.applies(cfg))
