"""The command line says what it is doing: tokens being generated, positions being checked."""

from __future__ import annotations

from conftest import config_text, run_cli, write_config, write_jsonl
from dashboard_helpers import ALPHA, write_run

from compute.core.artifact.reader import open_artifact
from compute.engine.verify import sample_positions


def test_run_shows_the_tokens_of_the_batch_being_generated_and_check_its_positions(tmp_path, model_pairs):
    dataset = write_jsonl(tmp_path / "data.jsonl", [{"id": "a", "instruction": "Say hi."}])
    config = write_config(tmp_path, config_text(model_pairs["llama"], dataset, tmp_path / "out", max_new_tokens=6))
    done = run_cli("run", str(config))
    assert done.returncode == 0, done.stderr
    assert "generate: " in done.stderr and "tok/s" in done.stderr, done.stderr
    checked = run_cli("check", str(tmp_path / "out" / "run.h5"), "--samples", "3")
    assert checked.returncode == 0, checked.stderr
    assert "check: 100%" in checked.stderr and "3/3" in checked.stderr, checked.stderr


def test_check_samples_as_many_distinct_positions_as_asked_or_all(tmp_path):
    artifact = open_artifact(write_run(tmp_path / "alpha.h5", ALPHA))  # 9 positions in 2 answers
    for n in (1, 4, 7, 9):
        positions = sample_positions(artifact, n)
        assert len(positions) == len(set(positions)) == n
    assert sorted(sample_positions(artifact, 20)) == [(0, t) for t in range(5)] + [(1, t) for t in range(4)]
