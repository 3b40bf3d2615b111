"""Shards for job arrays (`run --shard I/N`): merged shards equal one process bit for bit, a killed shard
resumes, a missing shard is named, bad values and running shards are refused in one line."""

from __future__ import annotations

import io
import re
from pathlib import Path

import h5py
import numpy as np
import polars
import polars.testing
import pytest
from conftest import REPEATED_EXAMPLES, repeated_examples_config, run_cli

from compute.core.config import load_config
from compute.core.inputs import RunError
from compute.core.lock import LockError, RunLock
from compute.core.partial import PartialWork
from compute.core.shards import Shard, ShardError, deal
from compute.engine.run import run


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test here on one torch thread."""


@pytest.fixture()
def config(model_pairs, tmp_path) -> Path:
    return repeated_examples_config(tmp_path, model_pairs["llama"], batch_size=2)  # 18 examples, 3 generated: 9 batches


def assert_identical(path: Path, reference: Path) -> None:
    """Every dataset and attribute equal, floats bit for bit; only the creation time may differ."""
    with h5py.File(path) as got, h5py.File(reference) as want:
        names: dict[str, list[str]] = {"got": [], "want": []}
        got.visit(names["got"].append)
        want.visit(names["want"].append)
        assert names["got"] == names["want"]
        for name in ["/", *names["want"]]:
            skip = {"created_utc"} if name == "/" else set()
            keys = sorted(set(want[name].attrs) - skip)
            assert sorted(set(got[name].attrs) - skip) == keys, name
            for key in keys:
                np.testing.assert_array_equal(got[name].attrs[key], want[name].attrs[key], err_msg=f"{name} {key}")
            if isinstance(want[name], h5py.Dataset):
                a, b = got[name][()], want[name][()]
                if name.startswith("aggregates/"):  # Parquet bytes: the tables, exactly
                    polars.testing.assert_frame_equal(
                        polars.read_parquet(io.BytesIO(a.tobytes())),
                        polars.read_parquet(io.BytesIO(b.tobytes())),
                        check_exact=True,
                    )
                else:
                    np.testing.assert_array_equal(a, b, err_msg=name)


def scored(err: str) -> int:
    return int(re.search(r"shard \d+/\d+: scored (\d+) examples", err)[1])


def test_shards_run_one_after_another_merge_into_the_one_process_artifact(config, tmp_path, capsys):
    reference = run(load_config(config)).rename(tmp_path / "one-process.h5")
    capsys.readouterr()
    counts = []
    for index in (3, 1, 2):  # any order
        assert run(load_config(config), shard=Shard(index, 3)) is None
        counts.append(scored(capsys.readouterr().err))
        assert not (tmp_path / "out" / "run.h5").exists()  # a shard writes no artifact
    assert sum(counts) == len(REPEATED_EXAMPLES) and all(counts)
    merged = run(load_config(config))
    assert "resuming: 18 of 18 examples already scored" in capsys.readouterr().err
    assert_identical(merged, reference)
    assert not (tmp_path / "out" / ".run.partial").exists()


def test_a_killed_shard_redoes_only_what_it_lacks(config, tmp_path, monkeypatch, capsys):
    reference = run(load_config(config)).rename(tmp_path / "one-process.h5")
    save = PartialWork.save

    def save_then_stop(self, meta, examples, token_text):
        save(self, meta, examples, token_text)
        raise KeyboardInterrupt  # Ctrl-C after the shard's first batch

    monkeypatch.setattr(PartialWork, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(load_config(config), shard=Shard(2, 2))
    monkeypatch.undo()
    first_batch = len(PartialWork(tmp_path / "out" / ".run.partial", "").done())
    assert first_batch == 2
    capsys.readouterr()
    run(load_config(config), shard=Shard(2, 2))
    second = scored(capsys.readouterr().err)
    run(load_config(config), shard=Shard(1, 2))
    first = scored(capsys.readouterr().err)
    assert first_batch + second + first == len(REPEATED_EXAMPLES)
    assert_identical(run(load_config(config)), reference)


def test_the_merge_names_a_shard_still_missing(config, tmp_path, capsys):
    for index in (1, 3):
        run(load_config(config), shard=Shard(index, 3))
    with pytest.raises(RunError, match=r"^run: shard 2/3 \(\d+ examples\) not finished: run `tds run .* --shard I/3`"):
        run(load_config(config))
    assert not (tmp_path / "out" / "run.h5").exists()
    with pytest.raises(ShardError, match="partial work is from 3 shards over 18 examples, not 4 shards"):
        run(load_config(config), shard=Shard(1, 4))


def test_the_merge_refuses_while_a_shard_runs(config, tmp_path):
    (tmp_path / "out").mkdir()
    held = RunLock(Shard(2, 4).lock_path(tmp_path / "out", "run"), "run shard 2/4")
    held.acquire()
    try:
        with pytest.raises(LockError, match=r"another run of run \(shard 2/4\) is in progress \(pid \d+\)"):
            run(load_config(config))
    finally:
        held.release()


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "2", "a/b", "-1/4"])
def test_bad_shard_values_are_refused(text):
    with pytest.raises(ShardError, match="--shard"):
        Shard.parse(text)


def test_a_bad_shard_value_is_one_line_and_exit_2(config):
    result = run_cli("run", str(config), "--shard", "5/4")
    assert result.returncode == 2
    line = "error: --shard 5/4: I must be between 1 and N (shards count from 1: 1/4)"
    assert result.stderr.strip().splitlines() == [line]


def test_deal_balances_whole_batches():
    shares = deal([10, 9, 8, 3, 2, 1], 3)
    assert sorted(b for share in shares for b in share) == list(range(6))
    assert [sum([10, 9, 8, 3, 2, 1][b] for b in share) for share in shares] == [11, 11, 11]
