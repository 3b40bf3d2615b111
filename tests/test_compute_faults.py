"""One error boundary: every fault is one line and a documented exit status, and leaves no file behind.

Exit statuses (compute/cli.py): 0 ok, 1 check found mismatches, 2 bad input or environment,
3 a bug (traceback), 130 interrupted.
"""

from __future__ import annotations

import fcntl
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace

import h5py
import pytest
from conftest import ROOT, config_text, write_config, write_jsonl

from compute.cli import main
from compute.core import config, datasets, files, packaged
from compute.core.artifact.errors import ArtifactError
from compute.core.config import ConfigError, _Loader, key, toml_keys
from compute.core.errors import UserError
from compute.core.partial import PartialWork
from compute.engine import run, score, sides, verify
from compute.engine import run as run_module

DATA = [{"id": "a", "instruction": "Thank me.", "response": "Thank you!"}, {"id": "b", "instruction": "Hi"}]


@pytest.fixture()
def folder(tmp_path):
    write_jsonl(tmp_path / "data.jsonl", DATA)
    return tmp_path


@pytest.fixture()
def config_path(folder, model_pairs):
    return write_config(folder, config_text(model_pairs["llama"], folder / "data.jsonl", folder / "out", batch_size=1))


def one_line(capsys, code: int, expected: int, *needles: str) -> str:
    """The fault is one `error:` line, the last on stderr (progress bars of model loading may come before it)."""
    err = capsys.readouterr().err.strip()
    assert code == expected, err
    assert "Traceback" not in err and err.count("error:") == 1, err
    line = err.split("\n")[-1]
    assert line.startswith("error: "), err
    for needle in needles:
        assert needle in line, err
    return line


def out_files(folder) -> list[str]:
    out = folder / "out"
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


# ---------------------------------------------------------------- one boundary


def test_every_module_error_is_a_user_error():
    errors = [
        ArtifactError,
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


def test_ctrl_c_mid_run_prints_interrupted_on_a_fresh_line_and_keeps_the_batches(folder, model_pairs):
    # Enough examples that the run cannot finish before the test sees its first batch, even on a stalled machine
    # (the signal goes out as soon as one batch is saved, so the count costs nothing otherwise).
    many = [{"id": str(i), "instruction": f"Say {i}.", "response": "Thank you! " * 20} for i in range(400)]
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


# ---------------------------------------------------------------- the final write: full disk, stale temp files


def _score_all_but_write(config_path, monkeypatch) -> None:
    """Leave every batch in the partial folder, as a run stopped in its final write does."""
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "write_artifact", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        assert main(["run", str(config_path)]) == 130


def test_a_full_disk_in_the_final_write_is_one_line_and_leaves_no_temp_file(capsys, folder, config_path, monkeypatch):
    _score_all_but_write(config_path, monkeypatch)
    limit = 4096  # bytes: the lock file fits, the artifact does not
    result = subprocess.run(
        [sys.executable, "-m", "compute", "run", str(config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().split("\n")[-1]
    assert last.startswith("error: ") and "no space left to write run.h5" in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert out_files(folder) == [".run.partial"]  # the scored batches are kept, no temp file
    assert (folder / "out" / ".run.partial").is_dir()


def test_temp_files_a_killed_write_left_are_removed_by_the_next_run(capsys, folder, config_path, monkeypatch):
    _score_all_but_write(config_path, monkeypatch)
    (folder / "out" / ".run.h5.k1ll3d00.tmp").write_bytes(b"\0" * 1000)
    (folder / "out" / ".run.partial" / ".batch-00000000-1.h5.k1ll3d00.tmp").write_bytes(b"\0" * 10)
    (folder / "out" / ".other.h5.k1ll3d00.tmp").write_bytes(b"")  # another run's: not ours to remove
    capsys.readouterr()
    assert main(["run", str(config_path)]) == 0
    assert "removed 2 temp files" in capsys.readouterr().err
    assert out_files(folder) == [".other.h5.k1ll3d00.tmp", "run.h5"]


def _plant_other_runs(out) -> dict[str, bytes]:
    """Files of other runs under out_dir: their artifacts, locks, killed writes' temp files and partial work,
    named so that a pattern or a prefix match on a run's name would reach them. Returns every file's bytes."""
    out.mkdir(exist_ok=True)
    for name in ("other", "run-2", "run.h5.x", "runx", "r", "[r]un", "*"):
        (out / f"{name}.h5").write_bytes(b"artifact")
        (out / f".{name}.lock").write_bytes(b"")
        (out / f".{name}.h5.k1ll3d00.tmp").write_bytes(b"killed write")
        partial = out / f".{name}.partial"
        partial.mkdir()
        (partial / "fingerprint").write_text("f\n")
        (partial / "batch-00000000-1.h5").write_bytes(b"saved batch")
        (partial / ".batch-00000001-1.h5.k1ll3d00.tmp").write_bytes(b"killed batch")
    return _tree(out)


def _tree(out) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["**", "r*", "?un", "[ro]un*"])
def test_the_sweep_compares_names_as_strings_never_as_patterns(folder, model_pairs, name):
    before = _plant_other_runs(folder / "out")
    loaded = config.load_config(_config(folder, model_pairs))
    run_module.remove_stale_temp_files(replace(loaded, name=name))  # as if a name had slipped past the config
    assert _tree(folder / "out") == before


HOSTILE_NAMES = ["*", "**", "r*", "?un", "[r]un", ".*", "run/..", "a b", "run$", "-run", "x.aggregates"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_run_name_with_pattern_or_odd_characters_is_refused_and_touches_nothing(capsys, folder, model_pairs, name):
    before = _plant_other_runs(folder / "out")
    path = _config(folder, model_pairs, name=name)
    one_line(capsys, main(["validate", path]), 2, "run.toml: name", "letters, digits")
    one_line(capsys, main(["run", path]), 2, "run.toml: name", "letters, digits")
    assert _tree(folder / "out") == before


def test_the_temp_file_sweep_touches_no_file_of_another_run_name(capsys, folder, model_pairs, monkeypatch):
    config_path = _config(folder, model_pairs, name="run", batch_size=1)
    _score_all_but_write(config_path, monkeypatch)
    others = {p: b for p, b in _plant_other_runs(folder / "out").items() if not p.startswith(".run.partial/")}
    mine = [folder / "out" / ".run.h5.k1ll3d00.tmp", folder / "out" / ".run.partial" / ".batch-0-1.h5.k1ll3d00.tmp"]
    for path in mine:
        path.write_bytes(b"killed")
    capsys.readouterr()
    assert main(["run", config_path]) == 0
    assert "removed 2 temp files" in capsys.readouterr().err
    after = _tree(folder / "out")
    assert after.pop("run.h5")[:4] == b"\x89HDF"
    assert after == others


# ---------------------------------------------------------------- inputs checked before the models load


@pytest.fixture()
def no_model_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(sides, "load_side_models", refuse)


def _config(folder, model_pairs, body_edit=lambda text: text, **extra):
    text = config_text(model_pairs["llama"], folder / "data.jsonl", folder / "out", **extra)
    return str(write_config(folder, body_edit(text)))


def test_top_k_larger_than_the_vocabulary_is_refused_before_any_model_loads(
    capsys, folder, model_pairs, no_model_loads
):
    path = _config(folder, model_pairs, top_k=100000)
    one_line(capsys, main(["run", path]), 2, "run.toml", "top_k 100000 is larger than the vocabulary")
    assert out_files(folder) == []


@pytest.mark.parametrize(
    "device, needle",
    [("cuda:7", "[base] device 'cuda:7'"), ("gpu0", "[base] device 'gpu0' is not a device name")],
)
def test_a_device_this_machine_lacks_is_refused_by_validate_and_run(capsys, folder, model_pairs, device, needle):
    path = _config(folder, model_pairs, lambda text: text.replace("[base]\n", f'[base]\ndevice = "{device}"\n'))
    one_line(capsys, main(["validate", path]), 2, needle)
    one_line(capsys, main(["run", path]), 2, needle)
    assert out_files(folder) == []


def test_an_example_longer_than_the_context_window_is_refused_before_scoring(capsys, folder, model_pairs):
    write_jsonl(folder / "data.jsonl", [{"id": "long", "instruction": "cat " * 3000, "response": "Sure"}])
    one_line(capsys, main(["run", _config(folder, model_pairs)]), 2, "example 'long'", "context window", "(2048)")
    assert out_files(folder) == []


def test_a_lone_surrogate_in_the_dataset_is_named(capsys, folder, model_pairs):
    (folder / "data.jsonl").write_text('{"instruction": "hi"}\n{"instruction": "a \\ud800 b"}\n')
    one_line(capsys, main(["validate", _config(folder, model_pairs)]), 2, "data.jsonl:2", "not valid Unicode")


def test_config_and_template_files_that_are_not_utf8(capsys, folder, model_pairs):
    bad = folder / "latin1.toml"
    bad.write_bytes('name = "café"\n'.encode("latin-1"))
    one_line(capsys, main(["validate", str(bad)]), 2, "latin1.toml: config file is not UTF-8")
    (folder / "urial.txt").write_bytes("# Query: {instruction} caf\xe9".encode("latin-1"))
    path = _config(folder, model_pairs, lambda t: t.replace(t[t.index("template = ", t.index("[base]")) :], ""))
    with open(path, "a") as f:
        f.write('template_file = "urial.txt"\n')
    one_line(capsys, main(["validate", path]), 2, "[base] template_file", "urial.txt is not UTF-8")


@pytest.mark.parametrize(
    "name, needle",
    [("a\\u0007b", "letters, digits"), ("x" * 239, "239 bytes long, at most 238")],
    ids=["control-character", "too-long"],
)
def test_run_names_that_cannot_be_file_names(capsys, folder, model_pairs, name, needle):
    path = _config(folder, model_pairs, name=name)
    one_line(capsys, main(["validate", path]), 2, "run.toml: name", needle)


# ---------------------------------------------------------------- check and info


@pytest.fixture()
def artifact_path(folder, config_path):
    assert main(["run", str(config_path)]) == 0
    return folder / "out" / "run.h5"


def test_check_says_which_model_cannot_be_loaded_and_how_to_point_at_it(capsys, artifact_path, model_pairs):
    with h5py.File(artifact_path, "a") as f:
        f["sides/aligned"].attrs["model"] = "/elsewhere/llama-aligned"
    capsys.readouterr()
    one_line(
        capsys,
        main(["check", str(artifact_path), "--samples", "2"]),
        2,
        "[aligned] cannot load the model /elsewhere/llama-aligned",
        "--model aligned=PATH",
    )
    assert (
        main(["check", str(artifact_path), "--samples", "2", "--model", f"aligned={model_pairs['llama']['aligned']}"])
        == 0
    )


def test_info_refuses_lengths_the_file_only_claims(capsys, artifact_path):
    claimed = 10**12  # ~40 TB of float32 per column, were a reader to trust it
    with h5py.File(artifact_path, "a") as f:
        offsets = f["examples/offsets"][()]
        offsets[-1] = claimed
        f["examples/offsets"][...] = offsets
        k = int(f.attrs["top_k"])
        for name in ("positions/example", "positions/t", "positions/token_id", "positions/kl", "positions/js"):
            dtype = f[name].dtype
            del f[name]
            f.create_dataset(name, shape=(claimed,), dtype=dtype, chunks=(1 << 16,))
        for side in ("aligned", "base"):
            for name, shape in [("logprob", (claimed,)), ("rank", (claimed,)), ("entropy", (claimed,))] + [
                (topk, (claimed, k)) for topk in ("topk_ids", "topk_logprobs")
            ]:
                dtype = f[f"sides/{side}/{name}"].dtype
                del f[f"sides/{side}/{name}"]
                f.create_dataset(f"sides/{side}/{name}", shape=shape, dtype=dtype, chunks=(1 << 12,) + shape[1:])
    assert artifact_path.stat().st_size < 1 << 20
    capsys.readouterr()
    one_line(capsys, main(["info", str(artifact_path)]), 2, "claims shape (1000000000000", "holds only part of it")


def test_info_refuses_offsets_that_claim_more_entries_than_stored(capsys, artifact_path):
    with h5py.File(artifact_path, "a") as f:
        del f["examples/offsets"]
        f.create_dataset("examples/offsets", shape=(10**12,), dtype="i8", chunks=(1 << 16,))
    capsys.readouterr()
    one_line(capsys, main(["info", str(artifact_path)]), 2, "/examples/offsets claims shape", "holds only part")


def test_info_refuses_context_text_offsets_past_the_text(capsys, artifact_path):
    with h5py.File(artifact_path, "a") as f:
        offsets = f["sides/base/context_text_offsets"][()]
        offsets[-1] += 10**9
        f["sides/base/context_text_offsets"][...] = offsets
    capsys.readouterr()
    one_line(capsys, main(["info", str(artifact_path)]), 2, "/sides/base/context_text_offsets must start at 0")


# ---------------------------------------------------------------- out_dir faults during a run, and the lock


@pytest.mark.parametrize("replace_with_file", [False, True], ids=["deleted", "turned-into-a-file"])
def test_the_partial_folder_lost_during_a_run_is_one_line(capsys, folder, config_path, monkeypatch, replace_with_file):
    real = PartialWork.save

    def save_then_lose_the_folder(self, *args):
        real(self, *args)
        shutil.rmtree(self.folder)
        if replace_with_file:
            self.folder.write_text("")

    monkeypatch.setattr(PartialWork, "save", save_then_lose_the_folder)
    one_line(capsys, main(["run", str(config_path)]), 2, ".run.partial: the partial-work folder was removed")
    assert out_files(folder) == ([".run.partial"] if replace_with_file else [])


def test_out_dir_turning_read_only_during_a_run_is_one_line(capsys, folder, config_path, monkeypatch):
    """Simulated (the tests run as root, whom a read-only folder does not stop): creating a file fails with EACCES."""
    real = PartialWork.save
    calls = {"n": 0}

    def save_then_turn_read_only(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            monkeypatch.setattr(
                files.tempfile,
                "mkstemp",
                lambda **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")),
            )
        real(self, *args)

    monkeypatch.setattr(PartialWork, "save", save_then_turn_read_only)
    one_line(capsys, main(["run", str(config_path)]), 2, ".run.partial: cannot write batch-", "Permission denied")
    assert out_files(folder) == [".run.partial"]  # the first batch is kept for the next run


def test_an_artifact_name_taken_by_a_folder_is_refused_before_the_run(capsys, folder, config_path, no_model_loads):
    (folder / "out" / "run.h5").mkdir(parents=True)
    one_line(capsys, main(["run", str(config_path), "--overwrite"]), 2, "run.h5: is a folder")
    assert out_files(folder) == ["run.h5"]


def test_a_second_run_of_a_name_is_refused_while_the_first_holds_the_lock(capsys, folder, config_path, no_model_loads):
    (folder / "out").mkdir()
    lock = folder / "out" / ".run.lock"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        one_line(capsys, main(["run", str(config_path)]), 2, "another run of run is in progress (pid 4242)")
    assert lock.read_text() == "4242\n"  # the holder's file is left alone


def test_the_lock_of_a_dead_run_is_taken_over(capsys, folder, config_path):
    (folder / "out").mkdir()
    (folder / "out" / ".run.lock").write_text("999999999\n")  # no process holds it
    assert main(["run", str(config_path)]) == 0
    assert out_files(folder) == ["run.h5"]


# ---------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    "argv, needle",
    [
        ([], "tds: the following arguments are required: command"),
        (["bogus"], "tds: argument command: invalid choice: 'bogus'"),
        (["run"], "tds run: the following arguments are required: config"),
        (["run", "x.toml", "--limit", "0"], "tds run: argument --limit: must be at least 1, got 0"),
        (["validate", "a", "b"], "tds: unrecognized arguments: b"),
        (["info"], "tds info: the following arguments are required: artifact"),
        (["check", "a.h5", "--samples", "many"], "tds check: argument --samples: must be a whole number"),
        (["check", "a.h5", "--model", "left=/m"], "tds check: argument --model: must be aligned=PATH or base=PATH"),
        (["aggregate"], "tds aggregate: the following arguments are required: artifact"),
        (["report", "--what"], "tds report: the following arguments are required: artifact"),
    ],
)
def test_an_argument_error_is_one_line_and_exit_2_for_every_subcommand(capsys, argv, needle):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err


# ---------------------------------------------------------------- what the README and docs/training.md promise


def test_doc_sync_readme_states_the_legal_run_names_the_config_enforces():
    """Doc sync: the README's sentence on legal run names states the rule config.LEGAL_NAME enforces."""
    import string

    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "a run name other than ASCII letters, digits, `.`, `_` and `-` starting with a letter or digit" in readme
    allowed = set(string.ascii_letters + string.digits + "._-")
    for c in map(chr, range(32, 127)):
        assert bool(config.LEGAL_NAME.fullmatch("a" + c)) == (c in allowed), c
        assert bool(config.LEGAL_NAME.fullmatch(c + "a")) == (c in allowed - set("._-")), c


def test_doc_sync_readme_lists_every_option_of_check_and_every_exit_status():
    """Doc sync: the README names every option of `tds check` and has a row for every exit status."""
    from compute.cli import parser
    from compute.core import errors

    readme = (ROOT / "README.md").read_text()
    check = parser()._subparsers._group_actions[0].choices["check"]
    for action in check._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help"):
                assert option in readme, option
    for status in (errors.EXIT_OK, errors.EXIT_MISMATCHES, errors.EXIT_BAD_INPUT, errors.EXIT_BUG):
        assert f"\n| {status} | " in readme, status
    assert f"\n| {errors.EXIT_INTERRUPTED} | interrupted" in readme
    assert "(a wrong command-line argument too)" in readme


def test_doc_sync_training_docs_list_every_option_the_stages_share():
    """Doc sync: docs/training.md names every option the training stages share and their exit statuses."""
    from compute.train import common

    training = (ROOT / "docs" / "training.md").read_text()
    for action in common.stage_parser("x", "sft")._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help"):
                assert f"`{option}`" in training, option
    assert "exit status 2, before training starts" in " ".join(training.split())
    assert "exit status 130" in training
