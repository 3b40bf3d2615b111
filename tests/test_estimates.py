"""Per-example sums and the headline numbers with intervals: against plain numpy over the stored positions."""

from __future__ import annotations

import importlib.util

import numpy as np
import polars as pl
import pytest
from dashboard_helpers import ALPHA, ROOT, write_run

from compute.core import estimates, example_sums, intervals, token_types
from compute.core.artifact.reader import open_artifact
from compute.core.categories import ALIGNED_TOP_CHOICE, ANSWER_TOKEN, categories

spec = importlib.util.spec_from_file_location("bench_dashboard", ROOT / "benchmarks" / "dashboard.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("estimates")
    paths = []
    for seed in (3, 4):  # two runs over the same answers, other statistics
        path = folder / f"run-{seed}.h5"
        bench.write_run(path, 40, seed=seed)
        paths.append(path)
    return paths


def _one(frame: pl.DataFrame, definition: str) -> pl.DataFrame:
    return frame.filter(pl.col("definition") == definition).sort("example")


def test_hand_checked_sums(tmp_path):
    artifact = open_artifact(write_run(tmp_path / "alpha.h5", ALPHA))
    sums = _one(example_sums.compute(artifact), ANSWER_TOKEN)
    # base ranks [5, 0, 1, 0, 3] and [0, 0, 2, 10]; KL [0.5, 0.1, 0.2, 0, 1] and [0, 0, 0.3, 2]
    assert sums["positions"].to_list() == [5, 4]
    assert sums["unshifted"].to_list() == [2, 2]
    assert sums["marginal"].to_list() == [1, 1]
    assert sums["shifted"].to_list() == [2, 1]
    assert sums["sum_kl"].to_list() == pytest.approx([1.8, 2.3])
    assert sums["max_kl"].to_list() == pytest.approx([1.0, 2.0])
    assert sums["max_kl_t"].to_list() == [4, 3]
    assert sums["positions_t0_9"].to_list() == [5, 4] and sums["positions_t50_"].to_list() == [0, 0]
    assert sums["from_base"].null_count() == 2 and sums["correct"].null_count() == 2


@pytest.mark.parametrize("definition", (ANSWER_TOKEN, ALIGNED_TOP_CHOICE))
def test_every_number_is_its_plain_numpy_value(synthetic, definition):
    artifact = open_artifact(synthetic[0])
    read = artifact.read
    sums = _one(example_sums.compute(artifact), definition)
    got = estimates.estimates(sums, intervals.resample_weights(sums.height, 50))
    category, t = categories(read, definition), read("positions/t")
    kl, ea, eb = read("positions/kl"), read("sides/aligned/entropy"), read("sides/base/entropy")
    texts = artifact.token_texts()
    kind = np.array([token_types.classify(texts.get(int(i), "")) for i in read("positions/token_id")])
    aligned_ids, base_ids = read("sides/aligned/topk_ids"), read("sides/base/topk_ids")
    expected = {
        "share_shifted": np.mean(category == 2),
        "share_marginal_t10_49": np.mean(category[(t >= 10) & (t < 50)] == 1),
        "share_unshifted_t50_": np.mean(category[t >= 50] == 0),
        "share_shifted_type_number": np.mean(category[kind == token_types.NUMBER] == 2),
        "mean_kl": np.mean(kl, dtype=np.float64),
        "exp_entropy_base": np.exp(np.mean(eb, dtype=np.float64)),
        "exp_entropy_ratio": np.exp(np.mean(eb, dtype=np.float64)) / np.exp(np.mean(ea, dtype=np.float64)),
        "answer_is_aligned_top": np.mean(read("sides/aligned/rank") == 0),
        "aligned_top1_in_top5": np.mean((base_ids[:, :5] == aligned_ids[:, :1]).any(axis=1)),
        "base_top1_in_top10": np.mean((aligned_ids[:, :10] == base_ids[:, :1]).any(axis=1)),
    }
    for name, value in expected.items():
        assert got[name].value == pytest.approx(value, rel=1e-6), name
        assert got[name].low <= got[name].value <= got[name].high, name
        assert got[name].n == 40
    assert "accuracy" not in got and "share_from_base" not in got


def test_the_estimates_table_holds_quantiles_and_both_definitions(synthetic):
    artifact = open_artifact(synthetic[0])
    table = estimates.table(artifact, example_sums.compute(artifact), resamples=50)
    both = table.group_by("definition").len()["len"].to_list()
    assert len(both) == 2 and both[0] == both[1]
    found = estimates.from_table(table.filter(pl.col("definition") == ANSWER_TOKEN))
    kl = artifact.read("positions/kl")
    assert found["kl_q90"].value == pytest.approx(np.quantile(kl, 0.9))
    assert found["js_max"].value == pytest.approx(artifact.read("positions/js").max())
    assert found["kl_q99"].low < found["kl_q99"].value < found["kl_q99"].high
    assert set(table["resamples"]) == {50}


def test_paired_differences_of_runs_over_the_same_answers(synthetic):
    a, b = (open_artifact(p) for p in synthetic)
    sums_a, sums_b = (_one(example_sums.compute(x), ANSWER_TOKEN) for x in (a, b))
    weights = intervals.resample_weights(40, 200)
    diff = estimates.paired_differences(sums_a, sums_b, weights)
    alone_a, alone_b = estimates.estimates(sums_a, weights), estimates.estimates(sums_b, weights)
    for name in ("share_shifted", "mean_kl", "exp_entropy_ratio"):
        assert diff[name].value == pytest.approx(alone_a[name].value - alone_b[name].value)
        assert diff[name].low <= diff[name].value <= diff[name].high
    itself = estimates.paired_differences(sums_a, sums_a, weights)["share_shifted"]
    assert (itself.value, itself.low, itself.high) == (0.0, 0.0, 0.0)


def test_position_intervals_agree_with_the_position_bins_and_a_loop(synthetic):
    from compute.core import aggregates

    artifact = open_artifact(synthetic[0])
    made = aggregates.compute(artifact)
    bands = made["position_intervals"].filter(pl.col("definition") == ANSWER_TOKEN)
    bins = made["position_bins"].filter(pl.col("definition") == ANSWER_TOKEN)
    shifted = bands.filter(pl.col("number") == "share_shifted").join(bins, on="t_start")
    assert shifted.height == bins.height
    assert shifted["value"].to_numpy() == pytest.approx(shifted["share_shifted"].to_numpy())
    assert (shifted["answers"] == shifted["answers_reaching"]).all()
    kl = bands.filter(pl.col("number") == "mean_kl").join(bins, on="t_start")
    assert kl["value"].to_numpy() == pytest.approx(kl["mean_kl"].to_numpy(), rel=1e-5)
    # bin 3 (t = 3) by the obvious loop over resampled examples
    weights = intervals.resample_weights(artifact.n_examples)
    example, t = artifact.read("positions/example"), artifact.read("positions/t")
    is_shifted = categories(artifact.read, ANSWER_TOKEN) == 2
    slow = []
    for row in weights:
        drawn = np.repeat(np.arange(artifact.n_examples), row.astype(int))
        rows = np.concatenate([np.flatnonzero((example == e) & (t == 3)) for e in drawn])
        slow.append(is_shifted[rows].mean())
    three = shifted.filter(pl.col("t_start") == 3).row(0, named=True)
    assert (three["low"], three["high"]) == pytest.approx(tuple(np.percentile(slow, [2.5, 97.5])))


def test_aggregate_writes_the_tables_an_older_artifact_lacks_to_its_side_file(tmp_path, monkeypatch, capsys):
    """An artifact whose stored aggregates predate example_sums / estimates / position_intervals: `tds aggregate`
    writes them into RUN.aggregates.h5 (the artifact untouched), and the dashboard reads them there instead of
    computing them."""
    import h5py

    from compute.cli import main
    from compute.core import aggregates
    from dashboard import load

    path = tmp_path / "older.h5"
    bench.write_run(path, 12, seed=5, extra=aggregates.write_into)
    later = ("example_sums", "estimates", "position_intervals")
    with h5py.File(path, "a") as f:
        for name in later:
            del f[f"aggregates/{name}"]
    before = path.read_bytes()
    assert main(["aggregate", str(path)]) == 0
    assert "wrote" in capsys.readouterr().out and path.read_bytes() == before
    info = path.stat()
    side = aggregates.stored(path, info.st_size, info.st_mtime_ns)
    computed = aggregates.compute(open_artifact(path))
    for name in later:
        assert side[name].equals(computed[name]), name

    def refuse(source):
        raise AssertionError("computed although the side file holds it")

    monkeypatch.setitem(aggregates.LATER_TABLES, "estimates", refuse)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(tmp_path))
    keys, _ = load.scan(tmp_path)
    assert load.table(keys[0], "estimates", ANSWER_TOKEN).height > 0
