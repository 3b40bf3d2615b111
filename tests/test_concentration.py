"""Where the change concentrates: ranked examples, forking tokens, entropy change by decile, base-favoured tokens."""

import numpy as np
import polars as pl
import pytest

from compute.core import concentration


def test_examples_ranked_by_max_and_by_mean_differ_and_open_at_the_largest_kl():
    sums = pl.DataFrame(
        {
            "example": [0, 1, 2],
            "positions": [10, 2, 0],
            "shifted": [1, 2, 0],
            "sum_kl": [3.0, 2.0, 0.0],  # means 0.3, 1.0
            "max_kl": [2.5, 1.1, None],
            "max_kl_t": [7, 0, -1],
            "sum_js": [1.0, 0.2, 0.0],
            "max_js": [0.5, 0.1, None],
        }
    )
    ids = ["a", "b", "c"]
    assert concentration.ranked_examples(sums, ids, "max_kl")["id"].to_list() == ["a", "b"]  # c has no positions
    assert concentration.ranked_examples(sums, ids, "mean_kl")["id"].to_list() == ["b", "a"]
    assert concentration.ranked_examples(sums, ids, "shifted", top=1)["id"].to_list() == ["b"]
    assert concentration.ranked_examples(sums, ids, "max_kl").row(0, named=True)["t"] == 7


def test_forking_overlap_and_entropy_change_by_decile():
    base = np.arange(100, dtype=float)
    same = concentration.forking_overlap(base.copy(), base)
    assert same["aligned_in_base"] == same["base_in_aligned"] == 1.0
    reversed_ = concentration.forking_overlap(base[::-1].copy(), base)
    assert reversed_["aligned_in_base"] == 0.0
    table = concentration.entropy_change_by_decile(base / 2, base)  # aligned halves every entropy
    assert table["positions"].to_list() == [10] * 10
    assert table["mean_change"].to_list() == pytest.approx([-(4.5 + 10 * d) / 2 for d in range(10)])


def test_base_favoured_tokens_sum_log_probability_differences_by_token():
    token_id = np.array([5, 5, 6, 7])
    aligned = np.log(np.array([0.1, 0.1, 0.5, 0.9]))
    base = np.log(np.array([0.4, 0.2, 0.25, 0.9]))
    table = concentration.base_favoured(token_id, aligned, base, {5: "x", 6: "y"})
    assert table["token_id"].to_list() == [5]  # 6 is aligned-favoured, 7 neither
    assert table.row(0, named=True)["sum"] == pytest.approx(np.log(4) + np.log(2))
    assert table.row(0, named=True)["positions"] == 2 and table["text"].to_list() == ["x"]


def test_a_run_without_positions_has_empty_tables_with_every_column():
    empty = np.zeros(0)
    table = concentration.entropy_change_by_decile(empty, empty)
    assert table.height == 0 and "mean_change" in table.columns
    assert concentration.base_favoured(empty.astype(int), empty, empty, {}).height == 0
    assert np.isnan(concentration.forking_overlap(empty, empty)["aligned_in_base"])
