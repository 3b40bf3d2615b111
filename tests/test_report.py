"""`compute report`: the papers' claims measured on hand-built runs whose every number is known."""

from __future__ import annotations

import math

import pytest
from dashboard_helpers import ALPHA, BETA, example, write_run

from compute.cli import main
from compute.core.artifact import open_artifact
from compute.core.categories import ALIGNED_TOP_CHOICE, ANSWER_TOKEN
from compute.core.report import run_claims, share_answers, shift_patterns

# ALPHA over the same answers, shifted elsewhere: ex-a t 1 and t 4, ex-b none.
ALPHA_LATER = [
    example(0, "ex-a", "Say hi *now*", [1, 2, 3, 4, 5], [0, 3, 0, 0, 7], [0.1] * 5),
    example(1, "ex-b", "Be literal", [6, 7, 8, 9], [0, 0, 0, 1], [0.1] * 4),
]


def test_run_claims_on_alpha(tmp_path):
    claims = run_claims(open_artifact(write_run(tmp_path / "alpha.h5", ALPHA)))
    # Shifted: ex-a t 0 ("Sure") and t 4 (" 42"), ex-b t 3 (" However"); 3 of 9, all before t 10.
    assert claims.shifted[ANSWER_TOKEN] == pytest.approx(3 / 9)
    assert claims.shifted[ALIGNED_TOP_CHOICE] == 0  # the helper's base top-k holds the answer token third
    assert claims.shifted_by_range[(0, 10)] == pytest.approx(3 / 9)
    assert math.isnan(claims.shifted_by_range[(50, None)])
    # Stylistic: "Sure" (politeness) and " However" (discourse) of the shifted; with "," and "\n" of all.
    assert claims.stylistic_among_shifted == pytest.approx(2 / 3)
    assert claims.stylistic_overall == pytest.approx(4 / 9)
    assert claims.exp_entropy == pytest.approx({"aligned": math.e, "base": math.e**2})


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
    assert "| alpha | 9 | 33.3 % / 0.0 % |" in out and "| beta |" in out and "same answers" not in out


def test_report_prints_the_patterns_of_a_chain(tmp_path, capsys):
    paths = [write_run(tmp_path / "first.h5", ALPHA), write_run(tmp_path / "later.h5", ALPHA_LATER)]
    assert main(["report", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert "| first + later | 1 | 11.1 % |" in out and "| none | 5 | 55.6 % |" in out


def test_report_on_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.h5")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
