"""The arithmetic task: seeded, disjoint splits and an exact judge."""

from __future__ import annotations

import json

import pytest

from compute.tasks import arithmetic


def test_same_seed_same_problems_other_seed_other_order():
    assert arithmetic.split(50, 20, seed=3) == arithmetic.split(50, 20, seed=3)
    assert arithmetic.split(50, 20, seed=3)[1] != arithmetic.split(50, 20, seed=4)[1]


def test_train_and_test_share_no_instruction():
    train, test = arithmetic.split(2000, 200)
    assert len(train) == 2000 and len(test) == 200
    assert not {p["instruction"] for p in train} & {p["instruction"] for p in test}
    assert len({p["id"] for p in train + test}) == 2200


def test_every_reference_is_the_sum_or_difference_in_its_instruction():
    for problem in arithmetic.all_problems()[::97]:
        a, b = [int(word) for word in problem["instruction"].replace(".", " ").split() if word.isdigit()]
        expected = a - b if "gives away" in problem["instruction"] else a + b
        assert problem["reference"] == str(expected)


def test_asking_for_more_problems_than_exist_is_refused():
    with pytest.raises(ValueError, match="distinct problems"):
        arithmetic.split(len(arithmetic.all_problems()), 1)


@pytest.mark.parametrize(
    ("response", "reference", "correct"),
    [
        ("The answer is 7.", "7", True),
        ("7", "7", True),
        ("-3", "-3", True),
        ("-3", "3", False),
        ("The answer is 8.", "7", False),
        ("no number", "7", False),
        ("", "7", False),
        ("3 + 4 = 7", "7", False),  # the first number is judged, not the last
        ("7.0 apples", "7", True),
        ("There are 12 books.", "12", True),
    ],
)
def test_judge_reads_the_first_number(response, reference, correct):
    assert arithmetic.is_correct(response, reference) is correct


def test_command_writes_both_splits(tmp_path):
    arithmetic.main(["--train", "30", "--test", "10", "--out", str(tmp_path)])
    train = [json.loads(line) for line in (tmp_path / "arithmetic-train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (tmp_path / "arithmetic-test.jsonl").read_text().splitlines()]
    assert (len(train), len(test)) == (30, 10)
    assert set(train[0]) == {"id", "instruction", "reference"}
    assert train == arithmetic.split(30, 10)[0]
