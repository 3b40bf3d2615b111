"""What an artifact records about a side (the attributes of /sides/<side>), written from its config (no torch).

The source's attributes come from its kind (compute/core/sources.py); the adapter, template and system prompt
are written here. A local adapter is recorded relative to the artifact's folder, so an artifact shipped with its
adapter beside it re-checks on any machine, and with its content hash, so that check refuses a different adapter
found at that place (compute/engine/verify.py reads both back).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from compute.core import adapters, sources

if TYPE_CHECKING:
    from compute.core.config import SideConfig


def described(cfg: SideConfig, artifact_dir: Path) -> dict[str, str]:
    """The attributes that say what the side is, as an artifact written to `artifact_dir` records them: its
    source, adapter, template and system prompt (all but `dtype` and the adapter's content hash)."""
    fields = sources.fields_of(cfg)
    attrs = {**sources.kind_of(fields).attrs(fields), "template": cfg.template_label}
    if cfg.template_file:
        attrs["template_text"] = cfg.template_text
    if cfg.system is not None:
        attrs["system"] = cfg.system
    if cfg.adapter:
        local = Path(cfg.adapter)
        attrs["adapter"] = os.path.relpath(local, artifact_dir) if local.is_absolute() else cfg.adapter
    if cfg.adapter_revision:
        attrs["adapter_revision"] = cfg.adapter_revision
    return attrs


def written(cfg: SideConfig, artifact_dir: Path, dtype: str) -> dict[str, str]:
    """Every attribute of the side in an artifact written to `artifact_dir`; `dtype` is what the weights ran in."""
    attrs = {**described(cfg, artifact_dir), "dtype": dtype}
    if cfg.adapter and Path(cfg.adapter).is_absolute() and Path(cfg.adapter).is_dir():
        attrs["adapter_sha256"] = adapters.content_hash(Path(cfg.adapter))
    return attrs
