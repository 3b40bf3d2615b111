"""A verifiable task in a run: references read, responses judged, accuracy stored and reported."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import config_text, write_config, write_jsonl

from compute.cli import main
from compute.core.artifact.examples import read_examples
from compute.core.artifact.reader import open_artifact
from compute.core.artifact.summary import summarize
from compute.core.config import load_config
from compute.core.datasets import DatasetError, load_examples
from compute.core.describe import describe
from compute.engine.run import run
from compute.tasks import arithmetic

PROBLEMS = [
    {"id": "right", "instruction": "Ben has 3 coins and gets 4 more.", "response": "It is 7.", "reference": "7"},
    {"id": "wrong", "instruction": "Ann has 5 coins and gives away 2.", "response": "It is 4 coins.", "reference": "3"},
    {"id": "unjudged", "instruction": "Thank me.", "response": "Thank you!"},
    {"id": "generated", "instruction": "Dev has 1 shell and gets 1 more.", "reference": "2"},
]


@pytest.fixture(scope="module")
def task_run(model_pairs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("task")
    dataset = write_jsonl(folder / "arith.jsonl", PROBLEMS)
    text = config_text(model_pairs["llama"], dataset, folder / "out", task="arithmetic", max_new_tokens=6)
    return open_artifact(run(load_config(write_config(folder, text))))


def test_references_and_verdicts_are_stored(task_run):
    assert task_run.attrs["task"] == "arithmetic"
    assert task_run.read("examples/id").tolist() == ["right", "wrong", "unjudged", "generated"]
    assert task_run.read("examples/reference").tolist() == ["7", "3", "", "2"]
    correct = task_run.read("examples/correct")
    assert correct.dtype == np.int8
    generated = task_run.read("examples/response")[3]
    assert correct.tolist() == [1, 0, -1, int(arithmetic.is_correct(generated, "2"))]


def test_accuracy_is_the_share_of_judged_examples_correct(task_run):
    summary = summarize(task_run)
    correct = task_run.read("examples/correct")
    assert summary["judged"] == 3
    assert summary["accuracy"] == pytest.approx((1 + correct[3]) / 3)
    assert f"accuracy {summary['accuracy']:.1%} (3 of 4 examples judged)" in describe(task_run.path)


def test_verdicts_survive_a_reread(task_run):
    """Partial work is merged through read_examples, so a resumed run keeps references and verdicts."""
    examples = read_examples(task_run)
    assert [(e.reference, e.correct) for e in examples[:3]] == [("7", 1), ("3", 0), ("", -1)]


def test_a_run_without_a_task_has_no_verdicts(tmp_path, model_pairs):
    dataset = write_jsonl(tmp_path / "arith.jsonl", PROBLEMS[:1])
    config = load_config(write_config(tmp_path, config_text(model_pairs["gpt2"], dataset, tmp_path)))
    artifact = open_artifact(run(config))
    assert not artifact.has("examples/correct") and not artifact.has("examples/reference")
    assert "accuracy" not in summarize(artifact) and "accuracy" not in describe(artifact.path)


def _fails(capsys, argv: list[str], *needles: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


def test_a_task_over_a_dataset_without_references_is_one_config_error(capsys, tmp_path, model_pairs):
    dataset = write_jsonl(tmp_path / "plain.jsonl", [{"instruction": "Hi"}])
    config = write_config(tmp_path, config_text(model_pairs["llama"], dataset, tmp_path / "out", task="arithmetic"))
    for command in ("validate", "run"):
        _fails(capsys, [command, str(config)], "run.toml", "task 'arithmetic'", "plain.jsonl", "reference")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_unknown_task_is_one_config_error(capsys, tmp_path, model_pairs):
    dataset = write_jsonl(tmp_path / "arith.jsonl", PROBLEMS)
    config = write_config(tmp_path, config_text(model_pairs["llama"], dataset, tmp_path / "out", task="chess"))
    _fails(capsys, ["validate", str(config)], "run.toml", "task must be one of arithmetic", "'chess'")


def test_a_reference_must_be_a_string(tmp_path):
    dataset = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "Hi", "reference": 7}])
    with pytest.raises(DatasetError, match=r"bad.jsonl:1: field 'reference' must be a string"):
        load_examples(dataset)


@pytest.mark.parametrize("reference", ["seven", "", "nan", "1e999", "inf", "7 apples"])
def test_a_reference_the_judge_cannot_use_is_refused_before_any_model_loads(
    capsys, tmp_path, model_pairs, monkeypatch, reference
):
    from compute.engine import sides

    monkeypatch.setattr(sides, "load_side_models", lambda *a, **k: pytest.fail("a model loaded"))
    problems = [PROBLEMS[0], {"id": "odd", "instruction": "Ann has 5 coins.", "reference": reference}]
    dataset = write_jsonl(tmp_path / "arith.jsonl", problems)
    config = write_config(tmp_path, config_text(model_pairs["llama"], dataset, tmp_path / "out", task="arithmetic"))
    for command in ("validate", "run"):
        _fails(capsys, [command, str(config)], "arith.jsonl: example 'odd'", f"reference {reference!r} is not a number")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("reference", ["7", "-2", "2.5", " 12 "])
def test_numbers_are_references(reference):
    assert arithmetic.reference_problem(reference) is None
