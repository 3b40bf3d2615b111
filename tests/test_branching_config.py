"""The [branching] table: defaults as in the BF paper, and one ConfigError line for each bad value."""

from __future__ import annotations

import pytest
from conftest import config_text, write_config, write_jsonl

from compute.core.config import BranchingConfig, ConfigError, load_config


@pytest.fixture
def write(tmp_path):
    dataset = write_jsonl(tmp_path / "data.jsonl", [{"instruction": "Hi."}])
    pair = {"aligned": "some-org/aligned", "base": "some-org/base"}  # hub ids: not touched by load_config

    def write_with(table: str):
        return write_config(tmp_path, config_text(pair, dataset, tmp_path / "out") + table)

    return write_with


def test_no_table_no_branching_and_an_empty_table_the_papers_defaults(write):
    assert load_config(write("")).branching is None
    assert load_config(write("[branching]\n")).branching == BranchingConfig(
        samples=50, temperature=1.0, top_p=0.9, max_new_tokens=1024, seed=42
    )


def test_values_are_read(write):
    branching = load_config(write("[branching]\nsamples = 8\ntemperature = 1\ntop_p = 0.5\nseed = 7\n")).branching
    assert (branching.samples, branching.temperature, branching.top_p, branching.seed) == (8, 1.0, 0.5, 7)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("samples = 0", r"\[branching\] samples must be at least 4, got 0"),
        ("samples = 3", r"\[branching\] samples must be at least 4, got 3: the estimator stops at the first"),
        ("samples = 2.5", r"\[branching\] samples must be an integer"),
        ("temperature = 0", r"\[branching\] temperature must be at least 0.0001, got 0.0"),
        ("temperature = 1e-300", r"\[branching\] temperature must be at least 0.0001, got 1e-300: logits divided"),
        ("temperature = nan", r"\[branching\] temperature must be at least 0.0001, got nan"),
        ("top_p = 1.5", r"\[branching\] top_p must be at most 1.0, got 1.5"),
        ("top_p = 0", r"\[branching\] top_p must be above 0.0"),
        ("top_p = true", r"\[branching\] top_p must be a number"),
        ("top_k = 5", r"unknown key 'top_k' in \[branching\]"),
    ],
)
def test_bad_values_name_the_key(write, table, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(f"[branching]\n{table}\n"))


def test_branching_must_be_a_table(write, tmp_path):
    dataset = write_jsonl(tmp_path / "data.jsonl", [{"instruction": "Hi."}])
    text = "branching = 3\n" + config_text({"aligned": "a/b", "base": "a/b"}, dataset, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"\[branching\] must be a table"):
        load_config(write_config(tmp_path, text))
