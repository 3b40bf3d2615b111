"""Scaling out: torchrun ranks, resume after kill -9, stale partial work, batching, device_map configs.

Runs use one torch thread (torchrun's default per rank), in process and in the subprocesses.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import polars
import polars.testing
import pytest
from conftest import (
    BASE_TEMPLATE,
    REPEATED_EXAMPLES,
    ROOT,
    config_text,
    repeated_examples_config,
    write_config,
    write_jsonl,
)

from compute.core.config import ConfigError, load_config
from compute.core.partial import PartialWork
from compute.engine.distributed import Ranks, balanced_share
from compute.engine.model import SideError, load_weights
from compute.engine.planning import make_batches
from compute.engine.run import run

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test here on one torch thread."""


@pytest.fixture()
def pair(model_pairs) -> dict[str, Path]:
    return model_pairs["llama"]


def command(config: Path, nproc: int = 1) -> list[str]:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)] if nproc > 1 else []
    return [sys.executable, *launcher, "-m", "compute", "run", str(config)]


def cli(config: Path, nproc: int = 1) -> subprocess.CompletedProcess:
    result = subprocess.run(command(config, nproc), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _table(stored: np.ndarray) -> polars.DataFrame:
    return polars.read_parquet(io.BytesIO(stored.tobytes()))


def _attrs(obj: h5py.HLObject, skip: set[str]) -> dict:
    """An object's attributes, arrays (lists of names) as lists so that they compare as one value."""
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in obj.attrs.items() if k not in skip}


def assert_same_artifact(path: Path, reference: Path) -> None:
    """Every dataset and attribute equal (floats within tolerance); only the creation time may differ."""
    with h5py.File(path) as got, h5py.File(reference) as want:
        names: dict[str, list[str]] = {"got": [], "want": []}
        got.visit(names["got"].append)
        want.visit(names["want"].append)
        assert names["got"] == names["want"]
        for name in ["", *names["want"]]:
            skip = {"created_utc"} if name == "" else set()
            assert _attrs(got[name or "/"], skip) == _attrs(want[name or "/"], skip), name
            if isinstance(want[name or "/"], h5py.Dataset):
                a, b = got[name][()], want[name][()]
                if name.startswith("aggregates/"):  # Parquet bytes: compare the tables, floats within tolerance
                    polars.testing.assert_frame_equal(_table(a), _table(b), abs_tol=1e-4, rel_tol=1e-4)
                elif b.dtype.kind == "f":
                    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4, err_msg=name)
                else:
                    np.testing.assert_array_equal(a, b, err_msg=name)


def test_two_ranks_under_torchrun_write_the_one_process_artifact(pair, tmp_path):
    config = repeated_examples_config(tmp_path, pair, batch_size=3)
    reference = run(load_config(config)).rename(tmp_path / "one-process.h5")
    result = cli(config, nproc=2)
    shares = dict(re.findall(r"rank (\d) of 2: scored (\d+) examples", result.stderr))
    assert sorted(shares) == ["0", "1"], result.stderr[-3000:]
    assert all(int(n) > 0 for n in shares.values()) and sum(int(n) for n in shares.values()) == len(REPEATED_EXAMPLES)
    assert_same_artifact(tmp_path / "out" / "run.h5", reference)
    assert not (tmp_path / "out" / ".run.partial").exists()


def test_a_run_killed_with_sigkill_resumes_and_equals_an_uninterrupted_run(pair, tmp_path):
    config = repeated_examples_config(tmp_path, pair, batch_size=1)
    final, partial = tmp_path / "out" / "run.h5", tmp_path / "out" / ".run.partial"
    reference = run(load_config(config)).rename(tmp_path / "uninterrupted.h5")
    process = subprocess.Popen(command(config), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(partial.glob("batch-*.h5")):
        assert process.poll() is None, "the run ended before it saved a batch"
        assert time.monotonic() < deadline, "no batch file within 120 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not final.exists()
    result = cli(config)
    resumed = re.search(r"resuming: (\d+) of (\d+) examples already scored", result.stderr)
    assert resumed, result.stderr[-3000:]
    assert int(resumed[1]) >= 1 and int(resumed[2]) == len(REPEATED_EXAMPLES)
    assert_same_artifact(final, reference)
    assert not partial.exists()


def test_a_changed_config_discards_partial_work_instead_of_resuming(pair, tmp_path, monkeypatch, capsys):
    config = repeated_examples_config(tmp_path, pair, batch_size=2)
    save = PartialWork.save

    def save_then_stop(self, *args):
        save(self, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(PartialWork, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(load_config(config))
    monkeypatch.undo()
    assert list((tmp_path / "out" / ".run.partial").glob("batch-*.h5"))

    config.write_text(config.read_text().replace(json.dumps(BASE_TEMPLATE), json.dumps("Q: {instruction}\nA:")))
    changed = run(load_config(config)).rename(tmp_path / "changed.h5")
    err = capsys.readouterr().err
    assert "discarding partial work" in err and "resuming" not in err
    clean = run(load_config(config))  # nothing partial is left now
    assert "discarding" not in capsys.readouterr().err
    assert_same_artifact(changed, clean)


@pytest.mark.parametrize("world_size, n_keys", [(1, 30), (2, 30), (3, 40), (4, 7), (5, 3)])
def test_balanced_share_gives_every_key_to_one_rank_and_balances_the_totals(world_size, n_keys):
    rng = random.Random(world_size)
    costs = {key: rng.randint(1, 500) for key in rng.sample(range(1000), n_keys)}
    shares = [balanced_share(costs, Ranks(rank, world_size)) for rank in range(world_size)]
    assert sorted(key for share in shares for key in share) == sorted(costs)
    totals = [sum(costs[key] for key in share) for share in shares]
    assert max(totals) - min(totals) <= max(costs.values())


def test_balanced_share_by_hand():
    costs = {10: 5, 11: 9, 12: 4, 13: 9, 14: 1}
    assert balanced_share(costs, Ranks(0, 2)) == [11, 10]  # 9 | 9, then 5 on the tie to rank 0 (14 | 9)
    assert balanced_share(costs, Ranks(1, 2)) == [13, 12, 14]  # then 4 and 1 to the lighter rank 1


@pytest.mark.parametrize(
    "batch_size, max_batch_tokens, expected",
    [
        (3, None, [[5, 1, 6], [2, 3, 0], [4, 7]]),
        (3, 200, [[5], [1, 6], [2, 3], [0, 4, 7]]),  # 250 alone exceeds the budget and still runs
        (8, 150, [[5], [1], [6], [2, 3], [0, 4, 7]]),
    ],
)
def test_make_batches_is_longest_first_within_batch_size_and_token_budget(batch_size, max_batch_tokens, expected):
    costs = [30, 100, 70, 70, 20, 250, 90, 10]
    planned = {i: SimpleNamespace(cost=cost) for i, cost in enumerate(costs)}
    config = SimpleNamespace(batch_size=batch_size, max_batch_tokens=max_batch_tokens)
    batches = make_batches(list(reversed(planned)), planned, config)
    assert batches == expected
    for batch in batches:
        assert len(batch) <= batch_size
        assert len(batch) == 1 or max_batch_tokens is None or costs[batch[0]] * len(batch) <= max_batch_tokens


def test_device_map_is_accepted_as_a_string_or_a_table_and_refused_otherwise(pair, tmp_path):
    def side_with(line: str):
        text = config_text(pair, tmp_path / "data.jsonl", tmp_path / "out").replace("[base]\n", f"{line}\n[base]\n")
        return load_config(write_config(tmp_path, text)).aligned

    write_jsonl(tmp_path / "data.jsonl", REPEATED_EXAMPLES)
    assert side_with('device_map = "auto"').device_map == "auto"
    table = side_with('device_map = { "model.embed_tokens" = 0, "model.layers" = "cuda:1", "lm_head" = "cpu" }')
    assert table.device_map == {"model.embed_tokens": 0, "model.layers": "cuda:1", "lm_head": "cpu"}
    assert side_with("").device_map is None
    assert table.model_key() != side_with("").model_key()
    for line in ("device_map = 2", "device_map = []", 'device_map = ""', "device_map = {}", 'device_map = {"" = 1.5}'):
        with pytest.raises(ConfigError, match=r"\[aligned\] device_map must be a string"):
            side_with(line)
    with pytest.raises(ConfigError, match="device or device_map, not both"):
        side_with('device = "cpu"\ndevice_map = "auto"')


def test_a_side_with_a_device_map_runs_like_one_on_a_device(pair, tmp_path):
    plain = run(load_config(repeated_examples_config(tmp_path / "plain", pair, batch_size=4)))
    config = repeated_examples_config(tmp_path / "mapped", pair, batch_size=4)
    config.write_text(config.read_text().replace('template = "chat"', 'template = "chat"\ndevice_map = "auto"'))
    mapped = run(load_config(config))
    with h5py.File(plain) as a, h5py.File(mapped) as b:
        for name in ("positions/token_id", "sides/aligned/rank", "sides/base/rank"):
            np.testing.assert_array_equal(b[name][()], a[name][()], err_msg=name)
        for name in ("positions/kl", "sides/aligned/logprob", "sides/aligned/entropy", "sides/base/logprob"):
            np.testing.assert_allclose(b[name][()], a[name][()], atol=1e-5, err_msg=name)


def test_a_device_map_under_several_processes_per_node_is_refused(pair, tmp_path, monkeypatch):
    config = repeated_examples_config(tmp_path, pair)
    config.write_text(config.read_text().replace('template = "chat"', 'template = "chat"\ndevice_map = "auto"'))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(SideError, match=r"\[aligned\] device_map .* one process per node"):
        load_weights("aligned", load_config(config).aligned)
