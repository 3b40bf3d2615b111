"""`compute report`: the papers' claims measured on hand-built runs whose every number is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from dashboard_helpers import ALPHA, BETA, example, experiment_run, write_run

from compute.cli import main
from compute.core import comparisons
from compute.core.artifact.reader import open_artifact
from compute.core.categories import ALIGNED_TOP_CHOICE, ANSWER_TOKEN
from compute.core.findings import run_findings
from compute.core.report import pct, share_answers, shift_patterns

# ALPHA over the same answers, shifted elsewhere: ex-a t 1 and t 4, ex-b none.
ALPHA_LATER = [
    example(0, "ex-a", "Say hi *now*", [1, 2, 3, 4, 5], [0, 3, 0, 0, 7], [0.1] * 5),
    example(1, "ex-b", "Be literal", [6, 7, 8, 9], [0, 0, 0, 1], [0.1] * 4),
]


def test_run_numbers_on_alpha(tmp_path):
    found = run_findings(open_artifact(write_run(tmp_path / "alpha.h5", ALPHA)))
    a, b = found.numbers[ANSWER_TOKEN], found.numbers[ALIGNED_TOP_CHOICE]
    # Shifted: ex-a t 0 ("Sure") and t 4 (" 42"), ex-b t 3 (" However"); 3 of 9, all before t 10.
    assert a["share_shifted"].value == pytest.approx(3 / 9)
    assert b["share_shifted"].value == 0  # the helper's base top-k holds the answer token third
    assert a["share_shifted_t0_9"].value == pytest.approx(3 / 9)
    assert math.isnan(a["share_shifted_t50_"].value)
    # Stylistic: "Sure" (politeness) and " However" (discourse) of the shifted; with "," and "\n" of all.
    assert a["stylistic_of_shifted"].value == pytest.approx(2 / 3)
    assert a["stylistic_of_all"].value == pytest.approx(4 / 9)
    assert (a["exp_entropy_aligned"].value, a["exp_entropy_base"].value) == pytest.approx((math.e, math.e**2))
    # two examples: 2 of 5 and 1 of 4 shifted; a resample draws ex-a twice (0.4), once each (1/3) or ex-b twice
    assert (a["share_shifted"].low, a["share_shifted"].high) == pytest.approx((0.25, 0.4))
    assert a["share_shifted"].n == 2


def test_a_number_prints_with_its_interval():
    from compute.core.intervals import Estimate

    assert pct(Estimate(0.013, 0.0091, 0.018, 100)) == "1.3 % [0.9, 1.8]"
    assert pct(Estimate(float("nan"), float("nan"), float("nan"), 0)) == "–"


def test_shift_patterns_of_runs_over_the_same_answers(tmp_path):
    first = open_artifact(write_run(tmp_path / "first.h5", ALPHA))
    later = open_artifact(write_run(tmp_path / "later.h5", ALPHA_LATER))
    assert share_answers([first, later])
    patterns = shift_patterns([first, later])
    # first shifts ex-a t0, t4 and ex-b t3; later shifts ex-a t1, t4.
    assert patterns == {(): 5, ("first",): 2, ("later",): 1, ("first", "later"): 1}
    assert shift_patterns([later, first]) == {(): 5, ("first",): 2, ("later",): 1, ("later", "first"): 1}
    assert shift_patterns([first, later], ALIGNED_TOP_CHOICE) == {(): 9}  # the base top-k holds every answer token


def test_runs_over_other_answers_have_no_patterns(tmp_path, capsys):
    alpha = write_run(tmp_path / "alpha.h5", ALPHA)
    beta = write_run(tmp_path / "beta.h5", BETA)
    assert not share_answers([open_artifact(alpha), open_artifact(beta)])
    with pytest.raises(ValueError):
        shift_patterns([open_artifact(alpha), open_artifact(beta)])
    assert main(["report", str(alpha), str(beta)]) == 0
    out = capsys.readouterr().out
    assert "| alpha | 2 / 9 | 33.3 % [25.0, 40.0] / 0.0 % [0.0, 0.0] |" in out and "| beta |" in out
    assert "same answers" not in out


def test_report_prints_the_patterns_of_a_chain(tmp_path, capsys):
    paths = [write_run(tmp_path / "first.h5", ALPHA), write_run(tmp_path / "later.h5", ALPHA_LATER)]
    assert main(["report", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert "| first + later | 1 | 11.1 % |" in out and "| none | 5 | 55.6 % |" in out


def test_report_on_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.h5")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_exact_mcnemar_against_hand_computed_binomial_tails():
    assert comparisons.mcnemar_exact(0, 0) == 1.0
    assert comparisons.mcnemar_exact(1, 0) == 1.0  # 2 * 1/2
    assert comparisons.mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert comparisons.mcnemar_exact(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert comparisons.mcnemar_exact(8, 2) == comparisons.mcnemar_exact(2, 8)


def test_paired_accuracy_matches_problems_by_id(tmp_path):
    ids_a, ids_b = ["p0", "p1", "p2", "p3"], ["p3", "p2", "p1", "p0", "p9"]
    a = np.array([1, 1, 0, -1], dtype=np.int8)  # p3 not judged: left out
    b = np.array([1, 0, 0, 0, 1], dtype=np.int8)  # p3, p2, p1, p0
    pair = comparisons.judged_pair(ids_a, a, ids_b, b)
    # over p0 p1 p2: a right 2 (p0, p1), b right 0: right only in a 2, only in b 0
    assert pair.difference.value == pytest.approx(2 / 3) and pair.difference.n == 3
    assert (pair.only_a, pair.only_b) == (2, 0) and pair.p_value == pytest.approx(0.5)


def test_report_json_holds_every_number_and_the_paired_comparisons(tmp_path, capsys):
    first = experiment_run(tmp_path, "first", [1, 0])
    later = experiment_run(tmp_path, "later", [1, 1])
    assert main(["report", "--json", "--resamples", "200", str(first), str(later)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "tds-report/1" and doc["interval"]["resamples"] == 200
    run = doc["runs"][0]
    shifted = run["numbers"][ANSWER_TOKEN]["share_shifted"]
    assert shifted["value"] == pytest.approx(3 / 9) and shifted["n"] == 2 and shifted["low"] <= shifted["high"]
    assert {"kl_q50", "kl_q90", "kl_q99", "kl_max", "aligned_top1_in_top1", "accuracy"} <= set(
        run["numbers"][ANSWER_TOKEN]
    )
    assert run["top_examples_by_max_kl"][0] == {"id": "ex-b", "example": 1, "max_kl": 2.0, "t": 3}
    assert set(run["forking_tokens"]) == {"aligned_in_base", "base_in_aligned", "share"}
    paired = doc["paired_differences"]
    assert len(paired) == 1 and paired[0]["differences"][ANSWER_TOKEN]["share_shifted"]["value"] == 0
    judged = doc["judged_pairs"][0]
    assert judged["accuracy_difference"]["value"] == pytest.approx(-0.5)
    assert (judged["right_only_in_a"], judged["right_only_in_b"], judged["mcnemar_exact_p"]) == (0, 1, 1.0)
