"""The dashboard at team scale: per-run aggregates (in the artifact or a side file), the byte-bounded cache,
Compare chunk by chunk, and the run picker."""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil

import h5py
import numpy as np
import polars as pl
import pytest
from dashboard_helpers import ALPHA, ALPHA_LABEL, APP, BETA, ROOT, small_runs, write_run
from streamlit.testing.v1 import AppTest

from compute.cli import main as cli
from compute.core import aggregates, files, token_types
from compute.core.artifact.reader import open_artifact
from compute.core.artifact.writer import write_artifact
from compute.core.categories import ALIGNED_TOP_CHOICE, ANSWER_TOKEN, categories
from dashboard import cache, load, picker, stages


def _bench():
    """benchmarks/dashboard.py, whose synthetic runs these tests use (its name clashes with the package)."""
    spec = importlib.util.spec_from_file_location("bench_dashboard", ROOT / "benchmarks" / "dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _bench()

DEFINITIONS = (ANSWER_TOKEN, ALIGNED_TOP_CHOICE)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A synthetic run of 60 examples with its aggregates written into it, as `compute run` writes them."""
    path = tmp_path_factory.mktemp("synthetic") / "synthetic.h5"
    bench.write_run(path, 60, seed=3, extra=aggregates.write_into)
    return path


def stored_tables(path):
    info = path.stat()
    return aggregates.stored(path, info.st_size, info.st_mtime_ns)


def by_definition(tables, name, definition):
    return tables[name].filter(pl.col("definition") == definition).drop("definition")


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_stored_aggregates_equal_sums_over_the_positions(synthetic, definition):
    """Every table checked against plain numpy over the stored per-position columns."""
    artifact = open_artifact(synthetic)
    tables = stored_tables(synthetic)
    category = categories(artifact.read, definition)
    kl, example, t = artifact.read("positions/kl"), artifact.read("positions/example"), artifact.read("positions/t")
    token_id, entropy_base = artifact.read("positions/token_id"), artifact.read("sides/base/entropy")

    summary = by_definition(tables, "summary", definition).row(0, named=True)
    for i, name in enumerate(("unshifted", "marginal", "shifted")):
        assert summary[f"share_{name}"] == pytest.approx(np.mean(category == i))
    assert summary["mean_kl"] == pytest.approx(kl.mean(dtype=np.float64), rel=1e-5)
    assert summary["answer_is_aligned_top"] == pytest.approx(np.mean(artifact.read("sides/aligned/rank") == 0))

    bins = by_definition(tables, "position_bins", definition).to_pandas().set_index("t_start")
    for start in (0, 5, 31):
        assert bins.loc[start, "positions"] == np.sum(t == start)
        assert bins.loc[start, "share_shifted"] == pytest.approx(np.mean(category[t == start] == 2))
        assert bins.loc[start, "mean_kl"] == pytest.approx(kl[t == start].mean(dtype=np.float64), rel=1e-5)
    within = (t >= 64) & (t < 96)
    assert bins.loc[64, "positions"] == within.sum()
    assert bins.loc[64, "share_marginal"] == pytest.approx(np.mean(category[within] == 1))

    per_example = by_definition(tables, "examples", definition).to_pandas().set_index("example")
    for e in (0, 17, 59):
        rows = example == e
        assert per_example.loc[e, "positions"] == rows.sum()
        assert per_example.loc[e, "share_shifted"] == pytest.approx(np.mean(category[rows] == 2))
        assert per_example.loc[e, "mean_kl"] == pytest.approx(kl[rows].mean(dtype=np.float64), rel=1e-5)

    entropy = by_definition(tables, "entropy_by_category", definition).to_pandas().set_index("category")
    assert sorted(entropy.index) == sorted(set(category.tolist()))
    for c in entropy.index:
        assert entropy.loc[c, "positions"] == np.sum(category == c)
        assert entropy.loc[c, "entropy_base"] == pytest.approx(entropy_base[category == c].mean(dtype=np.float64))

    counts = by_definition(tables, "token_counts", definition).to_pandas().set_index("token_id")
    for token in (0, 1, 2, int(token_id[-1])):
        rows = token_id == token
        shifted = np.flatnonzero(rows & (category == 2))
        assert counts.loc[token, "count"] == rows.sum()
        assert counts.loc[token, "shifted"] == len(shifted)
        assert (
            (counts.loc[token, "example_row"] == shifted[0])
            if len(shifted)
            else np.isnan(counts.loc[token, "example_row"])
        )
    ids, occurrences = np.unique(token_id, return_counts=True)
    assert counts.index.tolist() == ids.tolist() and counts["count"].tolist() == occurrences.tolist()

    types = by_definition(tables, "token_types", definition).to_pandas().set_index("type")
    texts = artifact.token_texts()
    type_of = np.array([token_types.classify(texts[int(i)]) for i in token_id])
    assert sorted(types.index) == sorted(set(type_of.tolist()))
    for name in types.index:
        here = type_of == name
        assert types.loc[name, "positions"] == here.sum()
        assert types.loc[name, "share_of_positions"] == pytest.approx(here.mean())
        assert types.loc[name, "share_shifted"] == pytest.approx(np.mean(category[here] == 2))


def test_the_tables_in_the_artifact_are_the_tables_the_dashboard_would_compute(synthetic, tmp_path):
    """Stored with the artifact, stored in a side file, or computed from positions: the same tables."""
    artifact = open_artifact(synthetic)
    inside = stored_tables(synthetic)
    computed = aggregates.compute(artifact)
    plain = tmp_path / "plain.h5"
    with h5py.File(synthetic, "r") as source, h5py.File(plain, "w") as copy:
        for key, value in source.attrs.items():
            copy.attrs[key] = value
        for name in source:
            if name != aggregates.GROUP:
                source.copy(name, copy)
    assert cli(["aggregate", str(plain)]) == 0
    side = stored_tables(plain)
    assert set(inside) == set(computed) == set(side) == set(aggregates.TABLES)
    for name in aggregates.TABLES:
        assert inside[name].equals(computed[name]), name
        assert side[name].equals(computed[name]), name


def test_hand_checked_numbers_come_through_the_aggregates(tmp_path):
    path = tmp_path / "alpha.h5"
    write_run(path, ALPHA)
    tables = aggregates.compute(open_artifact(path))
    summary = by_definition(tables, "summary", ANSWER_TOKEN).row(0, named=True)
    assert (summary["share_unshifted"], summary["share_marginal"], summary["share_shifted"]) == pytest.approx(
        (4 / 9, 2 / 9, 3 / 9)
    )
    aligntds = by_definition(tables, "summary", ALIGNED_TOP_CHOICE).row(0, named=True)
    assert (aligntds["share_marginal"], aligntds["share_shifted"]) == pytest.approx((5 / 9, 0))
    answers = tables["answers"]
    assert answers["length"].to_list() == [5, 4] and answers["hash"].n_unique() == 2


def test_the_aggregate_command_writes_a_side_file_and_never_the_artifact(tmp_path, capsys, monkeypatch):
    alpha, beta = small_runs(tmp_path / "runs")
    before = alpha.read_bytes(), alpha.stat().st_mtime_ns
    assert cli(["aggregate", str(alpha)]) == 0
    assert (alpha.read_bytes(), alpha.stat().st_mtime_ns) == before
    side = tmp_path / "runs" / "alpha.aggregates.h5"
    assert f"wrote {side}" in capsys.readouterr().out
    assert sorted(p.name for p in side.parent.iterdir()) == ["alpha.aggregates.h5", "alpha.h5", "beta.h5"]

    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(side.parent))
    runs, problems = load.open_runs(load.scan(side.parent)[0])
    assert problems == [] and [run.file for run in runs] == ["alpha.h5", "beta.h5"]  # the side file is no run
    assert [load.aggregates_source(run) for run in runs] == ["side file", "positions"]

    write_run(alpha, BETA, overwrite=True)  # a new version of alpha: the side file no longer matches it
    runs, _ = load.open_runs(load.scan(side.parent)[0])
    assert load.aggregates_source(runs[0]) == "positions"
    assert load.table(runs[0].key, "answers")["length"].to_list() == [5, 2, 1]  # beta's answers now


def test_the_aggregate_command_refuses_bad_input_in_one_line(tmp_path, capsys):
    not_an_artifact = tmp_path / "notes.h5"
    not_an_artifact.write_text("hello")
    assert cli(["aggregate", str(not_an_artifact)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {not_an_artifact}:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.h5"]

    with_tables = tmp_path / "stored.h5"
    write_artifact(with_tables, bench_meta(), [], {}, extra=aggregates.write_into)
    assert cli(["aggregate", str(with_tables)]) == 0
    assert "holds its aggregates already" in capsys.readouterr().out
    assert not (tmp_path / "stored.aggregates.h5").exists()


def test_the_aggregate_command_leaves_no_temp_file_where_it_cannot_write(tmp_path, capsys, monkeypatch):
    """The rename fails after the temp file is written (a full disk would fail the write itself): one line, exit 2,
    nothing left beside the artifact."""
    alpha, _ = small_runs(tmp_path / "runs")

    def no_space(source, target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "replace", no_space)
    assert cli(["aggregate", str(alpha)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {alpha.parent}: cannot write alpha.aggregates.h5: No space left on device\n"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["alpha.h5", "beta.h5"]


def bench_meta():
    from compute.core.artifact.records import RunMeta

    attrs = {"model": "m", "template": "chat", "dtype": "float32"}
    return RunMeta(name="stored", top_k=3, side_attrs={"aligned": attrs, "base": attrs})


def test_the_cache_counts_bytes_and_drops_the_least_recently_used():
    store = cache.ByteCache(max_bytes=1000)
    made = []

    def make(n):
        made.append(n)
        return np.zeros(n, dtype=np.uint8)

    a = store.get("a", lambda: make(400))
    store.get("b", lambda: make(400))
    assert store.get("a", lambda: make(400)) is a  # kept, the same object (no copy per caller), and now recent
    store.get("c", lambda: make(400))  # 1200 > 1000: b, the least recently used, goes
    assert (len(store), store.bytes, made) == (2, 800, [400, 400, 400])
    store.get("b", lambda: make(400))
    assert made[-1] == 400 and len(made) == 4  # b was made again
    big = store.get("big", lambda: make(5000))
    assert len(big) == 5000 and "big" not in store._entries and store.bytes <= 1000


def test_the_cache_sizes_frames_by_their_buffers():
    frame = pl.DataFrame({"x": np.zeros(1000, dtype=np.float64)})
    assert cache.size_of(frame) >= 8000
    assert cache.size_of({"a": frame, "b": (frame, np.zeros(10))}) >= 16080


def test_a_bad_cache_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("TDS_CACHE_MB", "lots")
    size, problem = cache.bound()
    assert size == cache.DEFAULT_MB * 2**20 and "TDS_CACHE_MB='lots'" in problem
    monkeypatch.setenv("TDS_CACHE_MB", "64")
    assert cache.bound() == (64 * 2**20, None)


def test_answer_blocks_bound_the_rows_read_from_every_run():
    starts_a = np.array([0, 10, 20, 30, 40])
    starts_b = np.array([40, 30, 20, 10, 0])  # the same answers in the opposite order
    lengths = np.array([10, 10, 10, 10, 10])
    blocks = load.answer_blocks(np.stack([starts_a, starts_b]), lengths, max_rows=25)
    assert blocks == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert load.answer_blocks(np.stack([starts_a]), np.array([100, 10, 10, 10, 10]), 25)[0] == slice(0, 1)
    starts_c = np.array([0, 30, 10, 40, 20])  # a third order: no two neighbours lie within 25 rows in all three
    blocks = load.answer_blocks(np.stack([starts_a, starts_b, starts_c]), lengths, max_rows=25)
    assert blocks == [slice(i, i + 1) for i in range(5)]


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_compare_in_small_chunks_counts_what_the_positions_say(synthetic, tmp_path, monkeypatch, definition):
    """Two runs with the same answers, the second in another example order: the chunked agreement equals a
    count over the positions of both runs."""
    other = tmp_path / "other.h5"
    bench.write_run(other, 60, seed=4, order=np.random.default_rng(0).permutation(60))
    monkeypatch.setattr(load, "COMPARE_CHUNK_ROWS", 700)
    keys = [load.RunKey(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in (synthetic, other)]
    chunked = load.agreement(keys[0], keys[1], definition)
    a, b = open_artifact(synthetic), open_artifact(other)
    cat_a, cat_b = categories(a.read, definition), categories(b.read, definition)
    ids_a, ids_b = a.read("examples/id").tolist(), b.read("examples/id").tolist()
    off_a, off_b = a.read("examples/offsets"), b.read("examples/offsets")
    expected = np.zeros((3, 3), dtype=np.int64)
    for e, example_id in enumerate(ids_a):
        f = ids_b.index(example_id)
        np.add.at(expected, (cat_a[off_a[e] : off_a[e + 1]], cat_b[off_b[f] : off_b[f + 1]]), 1)
    got = np.zeros((3, 3), dtype=np.int64)
    for row in chunked.iter_rows(named=True):
        got[row["category"], row["category_b"]] = row["positions"]
    assert got.sum() == a.n_positions and np.array_equal(got, expected)


@pytest.mark.parametrize("least", [2, 1])
def test_stage_patterns_in_small_chunks_count_what_the_positions_say(synthetic, tmp_path, monkeypatch, least):
    """Three runs over the same answers, two in other example orders (one missing 10 examples): the patterns
    counted block by block equal a count over each run's positions, answer by answer."""
    others = [tmp_path / "b.h5", tmp_path / "c.h5"]
    bench.write_run(others[0], 60, seed=4, order=np.random.default_rng(0).permutation(60))
    bench.write_run(others[1], 60, seed=5, order=np.random.default_rng(1).permutation(60)[:50])
    monkeypatch.setattr(load, "COMPARE_CHUNK_ROWS", 700)
    paths = [synthetic, *others]
    keys = tuple(load.RunKey(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    shared = load.shared_answers(keys)
    lengths = shared["length"].to_numpy()
    blocks = (
        stages.Block(block.categories, block.token_ids, lengths[block.answers], block.answers.start)
        for block in load.shared_blocks(keys, ANSWER_TOKEN, token_ids=True)
    )
    tokens = load.tokens(keys[0])
    counted = stages.count(blocks, 3, least, int(lengths.max()), tokens, samples=5)

    artifacts = [open_artifact(p) for p in paths]
    text = dict(zip(tokens["id"].to_list(), tokens["text"].to_list(), strict=True))
    expected = np.zeros_like(counted.counts)
    first_seen: dict[int, list[tuple[str, int]]] = {}
    rows = {}
    for artifact in artifacts:
        ids, offsets = artifact.read("examples/id").tolist(), artifact.read("examples/offsets")
        rows[artifact.path] = (
            {i: (offsets[e], offsets[e + 1]) for e, i in enumerate(ids)},
            artifact.read("sides/base/rank"),
        )
    held = [set(rows[a.path][0]) for a in artifacts]
    for example_id in artifacts[0].read("examples/id").tolist():
        if not all(example_id in h for h in held):
            continue
        code = 0
        for i, artifact in enumerate(artifacts):
            (lo, hi), ranks = rows[artifact.path][0][example_id], rows[artifact.path][1]
            code = code | ((np.where(ranks[lo:hi] == 0, 0, np.where(ranks[lo:hi] <= 2, 1, 2)) >= least) << i)
        lo, hi = rows[artifacts[0].path][0][example_id]
        token_ids = artifacts[0].read("positions/token_id")[lo:hi]
        for t, (c, token) in enumerate(zip(code.tolist(), token_ids.tolist(), strict=True)):
            kind = stages.TYPES.index(token_types.classify(text[token]))
            expected[c, np.searchsorted(counted.edges, t, side="right") - 1, kind] += 1
            first_seen.setdefault(c, []).append((example_id, t))
    assert expected.sum() == artifacts[2].n_positions  # c holds 50 of the 60 answers: those are shared
    assert np.array_equal(counted.counts, expected)
    ids = load.examples(keys[0])["id"]
    got = counted.samples.join(
        shared.with_row_index("answer").select(pl.col("answer").cast(pl.Int64), "example_0"),
        on="answer",
        maintain_order="left",
    )
    for code, seen in first_seen.items():
        part = got.filter(pl.col("pattern") == code)
        assert [(ids[e], t) for e, t in zip(part["example_0"], part["t"], strict=True)] == seen[:5], code


def test_picker_groups_by_prefix_pair_and_tags():
    sides = {
        "aligned": {"model": "org/m", "template": "chat"},
        "base": {"model": "org/m", "template": "plain"},
    }
    runs = [
        ("ckpt-100 · x", "ckpt-100", sides, {"tags": "sft, week 1"}),
        ("ckpt-200 · x", "ckpt-200", sides, {"tags": ["sft"]}),
        ("urial · x", "urial", sides, {}),
    ]
    found = picker.groups(runs)
    assert found[picker.ALL] == ["ckpt-100 · x", "ckpt-200 · x", "urial · x"]
    assert found["name: ckpt…"] == ["ckpt-100 · x", "ckpt-200 · x"]
    assert found["tag: sft"] == ["ckpt-100 · x", "ckpt-200 · x"] and found["tag: week 1"] == ["ckpt-100 · x"]
    assert found["pair: m: chat vs ‘plain’"] == [label for label, *_ in runs]
    assert "name: urial…" not in found  # a group of one is no group
    assert picker.matching(found[picker.ALL], "CKPT 200") == ["ckpt-200 · x"]


def test_the_picker_says_how_many_runs_are_shown_and_searches(tmp_path, monkeypatch):
    directory = tmp_path / "runs"
    alpha, _ = small_runs(directory)
    for i in range(10):
        shutil.copy(alpha, directory / f"copy-{i:02d}.h5")
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert "8 of 12 runs shown" in [c.value for c in at.sidebar.caption]
    at.sidebar.text_input(key="run-search").input("copy-07").run()
    runs = at.sidebar.multiselect[0]
    assert [o for o in runs.options if "copy-07" in o] and len(runs.options) == 9  # the match and the 8 picked
    at.sidebar.button(key="runs-show-listed").click().run()
    assert at.sidebar.multiselect[0].value == [f"{ALPHA_LABEL} (copy-07.h5)"]
    assert "1 of 12 runs shown" in [c.value for c in at.sidebar.caption]
    assert not at.exception and not at.warning


def test_a_damaged_side_file_is_ignored_and_every_page_draws_from_a_good_one(tmp_path, monkeypatch):
    alpha, beta = small_runs(tmp_path / "runs")
    (tmp_path / "runs" / "beta.aggregates.h5").write_bytes(b"not hdf5")
    assert cli(["aggregate", str(alpha)]) == 0
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(tmp_path / "runs"))
    runs, problems = load.open_runs(load.scan(tmp_path / "runs")[0])
    assert problems == [] and [load.aggregates_source(run) for run in runs] == ["side file", "positions"]
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    shares = at.dataframe[0].value.set_index("run").loc[ALPHA_LABEL]
    assert (shares["share_unshifted"], shares["share_shifted"]) == pytest.approx((4 / 9, 3 / 9))
    for page in ("positions", "token_types", "examples", "compare"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception and not at.warning, page
