"""Where a side's weights come from: one declaration per kind of source, first match wins (no torch).

A kind says when it applies, what `from_pretrained` is given (a path or hub id and its keyword arguments),
which side attributes it writes into an artifact and how `tds check` reads them back to load the same weights
again. It works on a side's *source fields*: `model` and the SideConfig fields that any kind names (NAMES),
taken from a config or from an artifact's stored attributes alike. A new kind of source is one row of
SOURCE_KINDS. A PEFT adapter is not a source: it goes on top of any of them (compute/core/side_attrs.py,
compute/engine/model.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compute.core import packaged
from compute.core.packaged import PACKAGE_PREFIX

if TYPE_CHECKING:
    from compute.core.config import SideConfig

Fields = Mapping[str, str | None]
"""A side's source fields: `model` and the NAMES, None where not set."""


def _nothing(fields: Fields) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class SourceKind:
    name: str
    applies: Callable[[Fields], bool]
    location: Callable[[Fields], tuple[str, dict[str, Any]]]
    """The first argument of from_pretrained and its keyword arguments (may prepare files, e.g. dequantise)."""
    names: tuple[str, ...] = ()
    """Source fields that, with `model`, say which weights: written under their own names where set, and read
    back from them."""
    facts: Callable[[Fields], dict[str, str]] = _nothing
    """What else the artifact records about the source (a package's version and file); never read back."""

    def attrs(self, fields: Fields) -> dict[str, str]:
        """The side attributes an artifact records about this source, `model` included."""
        given = {name: str(fields[name]) for name in self.names if fields.get(name)}
        return {"model": str(fields["model"]), **given, **self.facts(fields)}

    def read(self, attrs: Mapping[str, object]) -> dict[str, str]:
        """The source fields that load the same weights again, from the attributes `attrs` wrote."""
        return {"model": str(attrs["model"]), **{name: str(attrs[name]) for name in self.names if name in attrs}}


def _package(fields: Fields) -> str:
    return str(fields["model"]).removeprefix(PACKAGE_PREFIX)


def _given(*names: str) -> Callable[[Fields], dict[str, str]]:
    """The source fields among `names` that are set, by name."""
    return lambda fields: {name: str(fields[name]) for name in names if fields.get(name)}


SOURCE_KINDS: tuple[SourceKind, ...] = (
    SourceKind(
        name="packaged model",
        applies=lambda fields: str(fields["model"]).startswith(PACKAGE_PREFIX),
        location=lambda fields: (str(packaged.local_copy(_package(fields))), {}),
        facts=lambda fields: {
            "package_version": packaged.check_installed(_package(fields)),
            "gguf_file": packaged.lookup(_package(fields)).gguf_file,
        },
    ),
    SourceKind(
        name="GGUF file",
        applies=lambda fields: bool(fields.get("gguf_file")),
        location=lambda fields: (str(fields["model"]), _given("gguf_file", "revision")(fields)),
        names=("gguf_file", "revision"),
    ),
    SourceKind(
        name="local folder",
        applies=lambda fields: Path(str(fields["model"])).is_dir(),
        location=lambda fields: (str(fields["model"]), {}),
    ),
    SourceKind(
        name="hub id",
        applies=lambda fields: True,
        location=lambda fields: (str(fields["model"]), _given("revision")(fields)),
        names=("revision",),
    ),
)

NAMES: tuple[str, ...] = tuple(dict.fromkeys(name for kind in SOURCE_KINDS for name in kind.names))
"""Every source field besides `model`, in declaration order (SideConfig has a field of each name)."""


def fields_of(side: SideConfig) -> dict[str, str | None]:
    """A SideConfig's source fields."""
    return {name: getattr(side, name) for name in ("model", *NAMES)}


def kind_of(fields: Fields) -> SourceKind:
    return next(kind for kind in SOURCE_KINDS if kind.applies(fields))


def read_back(attrs: Mapping[str, object]) -> dict[str, str]:
    """The source fields that load the weights an artifact's side recorded, as the kind that wrote them reads
    them (a packaged model's recorded GGUF file name is a fact, not a field)."""
    stored = {name: str(attrs[name]) if name in attrs else None for name in ("model", *NAMES)}
    return kind_of(stored).read(attrs)
