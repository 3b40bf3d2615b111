"""The Branching factor page and its pure functions, on hand-made samples whose BF is known."""

from __future__ import annotations

import dataclasses
import math

import pytest
from dashboard_helpers import ALPHA, APP, BETA, TOKENS, write_run
from streamlit.testing.v1 import AppTest

from compute.core.artifact.records import RunMeta
from compute.core.artifact.writer import write_artifact
from compute.core.branching import ExampleSamples
from dashboard import branching


def uniform(m: int, lengths: list[int]) -> ExampleSamples:
    """Samples of a uniform distribution over m tokens: BF m."""
    return ExampleSamples.from_lists(
        [[math.log(m)] * n for n in lengths], [[1] * n for n in lengths], [[-math.log(m)] * n for n in lengths]
    )


SETTINGS = {"samples": 5, "temperature": 1.0, "top_p": 0.9, "max_new_tokens": 8, "seed": 0}
# aligned: BF 2 and 4 (mean 3); base: BF 6 and 12 (mean 9), example 1's samples reach only 3 positions
SAMPLES = {
    "aligned": [uniform(2, [6] * 5), uniform(4, [6] * 5)],
    "base": [uniform(6, [6] * 5), uniform(12, [3] * 5)],
}


def test_summary_row_has_bf_per_side_and_base_over_aligned():
    row = branching.summary_row("r", SETTINGS, SAMPLES)
    assert row["bf_aligned"] == pytest.approx(3) and row["bf_base"] == pytest.approx(9)
    assert row["bf_ratio"] == pytest.approx(3)
    assert (row["examples_aligned"], row["samples"]) == (2, 5)


def test_an_example_without_a_bf_is_left_out_of_the_mean():
    samples = {"aligned": [uniform(2, [6] * 5), uniform(7, [6] * 3)], "base": SAMPLES["base"]}
    row = branching.summary_row("r", SETTINGS, samples)
    assert row["bf_aligned"] == pytest.approx(2) and row["examples_aligned"] == 1


def test_curve_per_side_and_position():
    frame = branching.curve("r", SAMPLES)
    base = frame.filter(side="base")["bf"].to_list()
    assert base == pytest.approx([9, 9, 9, 6, 6, 6])  # positions 3-5 only reached by example 0
    assert frame.filter(side="aligned")["bf"].to_list() == pytest.approx([3] * 6)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    directory.mkdir()
    meta = RunMeta(
        name="sampled",
        top_k=3,
        side_attrs={side: {"model": f"tiny/{side}", "template": "chat", "dtype": "float32"} for side in SAMPLES},
        branching=SETTINGS,
    )
    examples = [
        dataclasses.replace(example, branching={"aligned": aligned, "base": base})
        for example, aligned, base in zip(ALPHA, SAMPLES["aligned"], SAMPLES["base"], strict=True)
    ]
    write_artifact(directory / "sampled.h5", meta, examples, TOKENS)
    write_run(directory / "beta.h5", BETA)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    return directory


def test_the_page_shows_bf_per_side_the_ratio_and_the_curve(runs_dir):
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("app_pages/branching.py").run()
    assert not at.exception, [e.value for e in at.exception]
    rows = at.dataframe[0].value
    assert len(rows) == 1 and rows["run"][0].startswith("sampled")
    assert rows["bf_aligned"][0] == pytest.approx(3)
    assert rows["bf_base"][0] == pytest.approx(9)
    assert rows["bf_ratio"][0] == pytest.approx(3)
    assert [c.value for c in at.caption if "branching data" in c.value] == [
        r"No branching data \(no \[branching\] table\) in 1 picked runs\: beta\."
    ]
    assert len(at.get("plotly_chart")) == 2
