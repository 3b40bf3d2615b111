"""One error boundary: every fault is one line and a documented exit status, and leaves no file behind.

Exit statuses (compute/__main__.py): 0 ok, 1 check found mismatches, 2 bad input or environment,
3 a bug (traceback), 130 interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
from conftest import ROOT, config_text, write_config, write_jsonl

from compute import artifact, config, datasets, packaged, run, score, sides, verify
from compute import run as run_module
from compute.__main__ import main
from compute.config import ConfigError, _Loader, key, toml_keys
from compute.errors import UserError

DATA = [{"id": "a", "instruction": "Thank me.", "response": "Thank you!"}, {"id": "b", "instruction": "Hi"}]


@pytest.fixture()
def folder(tmp_path):
    write_jsonl(tmp_path / "data.jsonl", DATA)
    return tmp_path


@pytest.fixture()
def config_path(folder, model_pairs):
    return write_config(folder, config_text(model_pairs["llama"], folder / "data.jsonl", folder / "out", batch_size=1))


def one_line(capsys, code: int, expected: int, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == expected, err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def out_files(folder) -> list[str]:
    out = folder / "out"
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


# ---------------------------------------------------------------- one boundary


def test_every_module_error_is_a_user_error():
    errors = [
        artifact.ArtifactError,
        config.ConfigError,
        datasets.DatasetError,
        packaged.PackageError,
        run.RunError,
        score.ScoringError,
        sides.SideError,
    ]
    assert all(issubclass(error, UserError) for error in errors)


def test_a_user_error_message_is_one_line():
    assert str(ConfigError("a:\n  b\tc")) == "a: b c"


def test_a_crash_inside_check_is_a_bug_status_not_mismatches(capsys, config_path, monkeypatch):
    assert main(["run", str(config_path)]) == 0
    monkeypatch.setattr(verify, "verify", lambda *a, **k: 1 / 0)
    assert main(["check", str(config_path.parent / "out" / "run.h5")]) == 3
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and err.strip().splitlines()[-1].startswith("error: an unexpected error")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_final_write_exits_130_and_leaves_no_file(capsys, folder, config_path, monkeypatch, signum):
    def interrupted_write(*args, **kwargs):
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(run_module, "write_artifact", interrupted_write)
    code = main(["run", str(config_path)])
    err = capsys.readouterr().err
    assert code == 130, err
    assert err.splitlines()[-1].startswith("interrupted: finished batches are kept")
    assert out_files(folder) == [".run.partial"]


def test_an_interrupt_a_finalizer_swallows_still_exits_130(capsys, folder, config_path, monkeypatch):
    real = run_module.write_artifact

    def write_after_a_swallowed_interrupt(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass  # as in an h5py object's __del__: "Exception ignored in ..."
        real(*args, **kwargs)

    monkeypatch.setattr(run_module, "write_artifact", write_after_a_swallowed_interrupt)
    assert main(["run", str(config_path)]) == 130
    assert capsys.readouterr().err.splitlines()[-1].startswith("interrupted:")


# ---------------------------------------------------------------- the config schema


@dataclass(frozen=True)
class Decoding:
    temperature: float = 1.0
    """Sampling temperature."""


@dataclass(frozen=True)
class WithTable:
    name: str
    decoding: Decoding = key(default_factory=Decoding)
    """A nested table: one declaration."""
    beams: int = key(1, at_least=1)


def test_a_nested_table_and_bounds_come_from_the_dataclass_alone(tmp_path):
    loader = _Loader(tmp_path / "run.toml")
    assert loader.table(WithTable, {"name": "x"}) == {"name": "x", "decoding": Decoding(), "beams": 1}
    assert loader.table(WithTable, {"name": "x", "decoding": {"temperature": 0}})["decoding"] == Decoding(0.0)
    for raw, message in [
        ({"decoding": {"top_p": 1}}, r"unknown key 'top_p' in \[decoding\] \(known: temperature\)"),
        ({"decoding": {"temperature": "hot"}}, r"\[decoding\] temperature must be a number, got 'hot'"),
        ({"decoding": 3}, r"\[decoding\] must be a table"),
        ({"beams": 0}, "beams must be at least 1, got 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            loader.table(WithTable, {"name": "x", **raw})


def test_the_known_keys_are_the_dataclass_fields(capsys, folder, model_pairs):
    text = "colour = 1\n" + config_text(model_pairs["llama"], folder / "data.jsonl", folder / "out")
    err = one_line(capsys, main(["validate", str(write_config(folder, text))]), 2, "unknown key 'colour'")
    known = err.split("(known: ")[1].rstrip(")").split(", ")
    assert known == sorted(toml_keys(config.RunConfig)) and "text" not in known and "path" not in known
    assert "template_text" not in toml_keys(config.SideConfig)


def test_ctrl_c_mid_run_prints_interrupted_on_a_fresh_line_and_resumes(folder, model_pairs):
    many = [{"id": str(i), "instruction": f"Say {i}.", "response": "Thank you! " * 20} for i in range(40)]
    write_jsonl(folder / "data.jsonl", many)
    path = write_config(folder, config_text(model_pairs["llama"], folder / "data.jsonl", folder / "out", batch_size=1))
    process = subprocess.Popen(
        [sys.executable, "-m", "compute", "run", str(path)],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list((folder / "out" / ".run.partial").glob("batch-*.h5")):
        assert process.poll() is None and time.monotonic() < deadline, "no batch saved"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    last = err.rstrip("\n").split("\n")[-1]  # a progress bar redraws with \r: split on \n only
    assert last.startswith("interrupted: finished batches are kept"), repr(err[-500:])
    assert out_files(folder) == [".run.partial"]
