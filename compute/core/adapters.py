"""A local PEFT adapter folder read without torch: its files, content hash, weights header and recorded base.

`validate` and `check` use these before any model loads: a corrupt weights file, an adapter_config.json
that is not JSON, or an adapter other than the one a run recorded is one line, not a traceback.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def adapter_files(folder: Path) -> list[Path]:
    """The folder's adapter_* files (its config and weights), by name."""
    return sorted(p for p in folder.iterdir() if p.name.startswith("adapter_") and p.is_file())


def content_hash(folder: Path) -> str:
    """sha256 over the adapter_* files' names and bytes: the same adapter wherever its folder is."""
    digest = hashlib.sha256()
    for path in adapter_files(folder):
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def problem(folder: Path) -> str | None:
    """What makes the folder unusable as an adapter (None when nothing found): its config must be a JSON
    object, its weights present, and a safetensors file's header whole (a truncated or garbled file)."""
    config = folder / "adapter_config.json"
    try:
        if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
            return f"{config} is not a JSON object"
    except (ValueError, OSError) as err:
        return f"{config} cannot be read as JSON ({err})"
    present = [folder / name for name in WEIGHTS if (folder / name).is_file()]
    if not present:
        return f"{folder} has no {' or '.join(WEIGHTS)}"
    if present[0].suffix == ".safetensors":
        return _safetensors_problem(present[0])
    return None


def _safetensors_problem(path: Path) -> str | None:
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:  # without safetensors (the dashboard's install) the check is left to loading
        return None
    try:
        with safe_open(path, framework="numpy") as weights:
            weights.keys()
    except (SafetensorError, OSError) as err:
        return f"{path} is not a whole safetensors file ({' '.join(str(err).split())})"
    return None


def recorded_base(folder: Path) -> str | None:
    """The base model the adapter was trained on, as adapter_config.json names it."""
    try:
        base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (ValueError, OSError, AttributeError):
        return None
    return base if isinstance(base, str) and base else None
