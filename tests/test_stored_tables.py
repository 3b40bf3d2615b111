"""Stored aggregates describe themselves: a statistic or category definition registered after a file was
written costs only its own means or rows, never every table, and the shipped artifacts keep opening."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest
from dashboard_helpers import APP, ROOT
from streamlit.testing.v1 import AppTest

from compute.cli import main
from compute.core import aggregates, statistics, tables
from compute.core.artifact.reader import open_artifact
from compute.core.categories import DEFINITIONS, CategoryDefinition, categories
from dashboard import load
from dashboard.pages import PAGES

SHIPPED = ("gemma-270m-grpo-vs-sft-branching.h5", "gemma-270m-arith-nudging.h5")


def _probe_statistic() -> statistics.Statistic:
    """An averaged pair statistic no file stores (its scorer is never called here)."""
    kl = statistics.BY_NAME["kl"]
    return statistics.Statistic(
        name="probe",
        scope="pair",
        dtype=np.float32,
        topk=False,
        required=False,
        aggregate="mean",
        label="probe",
        unit="nats",
        doc="a statistic registered by a test",
        compute=kl.compute,
        naive=kl.naive,
    )


def _every_position_shifted() -> CategoryDefinition:
    """A definition whose rank is 3 everywhere: every position shifted."""
    return CategoryDefinition(
        id="probe_all_shifted",
        label="probe: all shifted",
        meaning="every position shifted",
        reads=("positions/t",),
        rank=lambda read: np.full(len(read("positions/t")), 3),
        summary_prefix="probe_share",
    )


@pytest.fixture
def registered(monkeypatch):
    """One more averaged statistic and one more category definition, for this test only."""
    probe = _probe_statistic()
    monkeypatch.setattr(statistics, "STATISTICS", (*statistics.STATISTICS, probe))
    monkeypatch.setitem(tables.AVERAGED, "probe", (probe, None))
    definition = _every_position_shifted()
    monkeypatch.setitem(DEFINITIONS, definition.id, definition)
    return definition.id


@pytest.fixture
def shipped_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "runs"
    directory.mkdir()
    for name in SHIPPED:
        shutil.copy(ROOT / "artifacts" / name, directory / name)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    return directory


def test_a_new_statistic_and_definition_leave_shipped_tables_in_use(registered, shipped_dir, monkeypatch):
    def no_full_recompute(key):
        raise AssertionError(f"{key.path}: every table recomputed from positions")

    monkeypatch.setattr(load, "_computed", no_full_recompute)
    runs, problems = load.open_runs(load.scan(shipped_dir)[0])
    assert not problems and len(runs) == len(SHIPPED)
    for run in runs:
        name = run.file
        assert load.aggregates_source(run) == "artifact"
        summary = load.table(run.key, "summary", registered)
        assert summary["share_shifted"].to_list() == [1.0]
        assert "mean_probe" in summary.columns and summary["mean_probe"].to_list() == [None]
        stored = load.table(run.key, "summary", "answer_token")
        with h5py.File(shipped_dir / name) as f:
            original = aggregates.read_table(f["aggregates"], "summary").filter(pl.col("definition") == "answer_token")
        assert stored["share_shifted"].to_list() == original["share_shifted"].to_list()
        bins = load.table(run.key, "position_bins", registered)
        assert bins.height and bins["share_shifted"].min() == 1.0 and bins["mean_probe"].null_count() == bins.height
    for page in PAGES:
        at = AppTest.from_file(str(APP), default_timeout=120).run()
        if page.slug != PAGES[0].slug:
            at.switch_page(page.script).run()
        assert not at.exception, (page.slug, [e.value for e in at.exception])


def test_older_groups_are_read_by_id():
    """The shipped groups predate ids and attrs (their `definition` column holds labels): they read as ids,
    and what they hold is read off their summary."""
    with h5py.File(ROOT / "artifacts" / SHIPPED[0]) as f:
        group = f["aggregates"]
        assert "statistics" not in group.attrs
        raw = pl.read_parquet(io.BytesIO(group["summary"][()].tobytes()))
        assert set(raw["definition"]) == {d.label for d in DEFINITIONS.values()}
        assert set(aggregates.read_table(group, "summary")["definition"]) == set(DEFINITIONS)
        contents = aggregates.held(group)
    assert contents.definitions == frozenset(DEFINITIONS)
    assert contents.statistics == frozenset(tables.AVERAGED)


def test_written_groups_say_what_they_hold(tmp_path):
    with h5py.File(tmp_path / "t.h5", "w") as f:
        aggregates.write_tables(
            f.create_group("aggregates"), aggregates.compute(open_artifact(ROOT / "artifacts" / SHIPPED[0]))
        )
        attrs = f["aggregates"].attrs
        assert sorted(attrs["category_definitions"]) == sorted(DEFINITIONS)
        assert sorted(attrs["statistics"]) == sorted(tables.AVERAGED)


def test_added_means_equal_the_means_computed_from_scratch(tmp_path):
    """Drop a stored statistic's means; completion puts back exactly what a full computation gives."""
    artifact = open_artifact(ROOT / "artifacts" / SHIPPED[0])
    full = aggregates.compute(artifact)
    lacking = {name: table.drop("mean_kl") if name in aggregates.WITH_MEANS else table for name, table in full.items()}
    contents = aggregates.Held(frozenset(c for c in tables.AVERAGED if c != "kl"), frozenset(DEFINITIONS))
    pieces = aggregates.completion(artifact, contents)
    assert not pieces.rows
    for name in aggregates.WITH_MEANS:
        completed = aggregates.complete_table(name, lacking[name], pieces).select(full[name].columns)
        assert completed.equals(full[name]), name


def test_a_missing_definition_adds_its_rows_only(registered):
    artifact = open_artifact(ROOT / "artifacts" / SHIPPED[0])
    stored = aggregates.compute(artifact, tuple(d for d in DEFINITIONS if d != registered))
    contents = aggregates.Held(frozenset(tables.AVERAGED), frozenset(d for d in DEFINITIONS if d != registered))
    pieces = aggregates.completion(artifact, contents)
    assert set(pieces.rows["summary"]["definition"]) == {registered}
    counts = aggregates.complete_table("token_counts", stored["token_counts"], pieces)
    new = counts.filter(pl.col("definition") == registered)
    assert (new["shifted"] == new["count"]).all()
    assert np.all(categories(artifact.read, registered) == 2)


def test_aggregate_brings_an_older_file_up_to_date_by_content(tmp_path, registered, capsys):
    """`tds aggregate` on a file whose tables lack a registered definition writes a side file keyed by the
    artifact's content: it serves after the file's modification time changes (a fresh clone), not after its
    content does."""
    path = tmp_path / "run.h5"
    shutil.copy(ROOT / "artifacts" / SHIPPED[0], path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["aggregate", str(path)]) == 0
    side = aggregates.side_path(path)
    assert side.is_file() and path.read_bytes() == before["run.h5"]
    stat = path.stat()
    assert aggregates.locate(path, stat.st_size, stat.st_mtime_ns) == (side, "side file")
    with h5py.File(side) as f:
        assert registered in set(f["aggregates"].attrs["category_definitions"])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    stat = path.stat()
    assert aggregates.locate(path, stat.st_size, stat.st_mtime_ns) == (side, "side file")
    with h5py.File(path, "a") as f:
        f.attrs["name"] = "changed"
    stat = path.stat()
    assert aggregates.locate(path, stat.st_size, stat.st_mtime_ns) == (path, "artifact")
    assert main(["aggregate", str(path)]) == 0
    assert "wrote" in capsys.readouterr().out


def test_aggregate_leaves_an_up_to_date_file_alone(tmp_path, capsys):
    """A shipped artifact with its shipped side file (the tables added since the artifact was written, keyed by
    its content) holds everything: nothing is written."""
    path = tmp_path / "run.h5"
    shutil.copy(ROOT / "artifacts" / SHIPPED[0], path)
    shutil.copy(aggregates.side_path(ROOT / "artifacts" / SHIPPED[0]), aggregates.side_path(path))
    side = aggregates.side_path(path).read_bytes()
    assert main(["aggregate", str(path)]) == 0
    assert "nothing written" in capsys.readouterr().out
    assert aggregates.side_path(path).read_bytes() == side
