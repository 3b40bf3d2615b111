"""Runs without stored tables: their tables are computed once per server in the background, and a page never
waits for more than the runs it shows (it shows what is ready and names what is still being computed)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from dashboard_helpers import ALPHA, APP, BETA, PLAIN_SIDES, TOKENS, label, write_run
from streamlit.testing.v1 import AppTest

from compute.core import aggregates
from compute.core.artifact.records import RunMeta
from compute.core.artifact.writer import write_artifact
from dashboard import cache, load, ui
from dashboard.background import Computations
from dashboard.pages import SLUGS

STORED = ("inside", "beside")  # tables in the artifact, tables in a side file
COMPUTED = ("plain", "slow")  # no stored tables; computing slow.h5 waits until the test lets it go
ALL = (*STORED, *COMPUTED)
PAGE_TIMEOUT_S = 20  # an AppTest run past this fails the test: a page blocked on the slow run would


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "runs"
    directory.mkdir()
    write_artifact(
        directory / "inside.h5",
        RunMeta(name="inside", top_k=3, side_attrs=PLAIN_SIDES),
        ALPHA,
        TOKENS,
        extra=aggregates.write_into,
    )
    aggregates.write_side_file(write_run(directory / "beside.h5", BETA))
    write_run(directory / "plain.h5", ALPHA)
    write_run(directory / "slow.h5", BETA)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(directory))
    return directory


@pytest.fixture
def slow(monkeypatch):
    """Computing slow.h5's tables waits for the event; every computation is counted by file name."""
    release, calls = threading.Event(), Counter()
    real = load.from_positions

    def counted(key: load.RunKey):
        name = Path(key.path).name
        calls[name] += 1
        if name == "slow.h5":
            assert release.wait(60), "slow.h5 never released"
        return real(key)

    monkeypatch.setattr(load, "from_positions", counted)
    yield release, calls
    release.set()  # the worker thread finishes whatever the test left


def session(names: tuple[str, ...]) -> AppTest:
    """A new viewer with the runs `names` picked, on the Overview."""
    at = AppTest.from_file(str(APP), default_timeout=PAGE_TIMEOUT_S)
    at.session_state[ui.RUNS_KEY] = [label(name) for name in names]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def overview_runs(at: AppTest) -> list[str]:
    return at.dataframe[0].value["run"].to_list()


def computing_lines(at: AppTest) -> list[str]:
    return [info.value.replace("\\", "") for info in at.info if "Still computing" in info.value]


def settle(name: str, directory: Path) -> None:
    key = next(key for key in load.scan(directory)[0] if Path(key.path).name == name)
    deadline = time.monotonic() + 30
    while not load._computations().done(key):
        assert time.monotonic() < deadline, f"{name} never computed"
        time.sleep(0.02)


def test_a_page_of_runs_with_stored_tables_never_waits_for_one_being_computed(folder, slow, monkeypatch):
    monkeypatch.setenv("TDS_TABLES_WAIT_S", "0.2")
    session(ALL)  # another viewer asked for every run: slow.h5 is being computed (and blocked)
    monkeypatch.setenv("TDS_TABLES_WAIT_S", "600")  # a page that waited on the slow run would time out
    at = session(STORED)
    for slug in SLUGS:
        if slug != "overview":
            at.switch_page(f"app_pages/{slug}.py").run()
        assert not at.exception, (slug, [e.value for e in at.exception])
        assert computing_lines(at) == [], slug
        assert not at.warning, (slug, [w.value for w in at.warning])
    at.switch_page("app_pages/overview.py").run()
    assert overview_runs(at) == [label(name) for name in STORED]
    assert slow[1]["slow.h5"] == 1 and not slow[0].is_set()


def test_a_page_showing_a_run_being_computed_says_so_shows_the_others_and_fills_in(folder, slow, monkeypatch):
    monkeypatch.setenv("TDS_TABLES_WAIT_S", "1.5")
    release, calls = slow
    at = session(ALL)
    assert overview_runs(at) == [label(name) for name in ("inside", "beside", "plain")]
    lines = computing_lines(at)
    assert len(lines) == 1 and "of 1 of the runs shown" in lines[0] and label("slow") in lines[0], lines
    assert not at.warning and not at.error, [w.value for w in at.warning]
    for slug in ("positions", "token_types", "compare"):
        at.switch_page(f"app_pages/{slug}.py").run()
        assert not at.exception and not at.warning, (slug, [w.value for w in at.warning])
        assert len(computing_lines(at)) == 1, slug
    at.switch_page("app_pages/examples.py").run()
    at.selectbox(key="ex-run").set_value(label("slow")).run()  # a page of the slow run alone: says so, stops
    assert not at.exception and not at.warning and len(computing_lines(at)) == 1
    assert not at.dataframe

    release.set()
    settle("slow.h5", folder)
    at.run()
    assert computing_lines(at) == [] and at.dataframe, "the slow run's page once its tables are ready"
    at.switch_page("app_pages/overview.py").run()
    assert overview_runs(at) == [label(name) for name in ALL] and computing_lines(at) == []
    assert calls == Counter({"plain.h5": 1, "slow.h5": 1})


def test_each_run_is_computed_once_per_server_and_stored_tables_never(folder, slow):
    release, calls = slow
    release.set()
    viewers = [session(ALL), session(("slow", "plain"))]
    cache.CACHE.clear()  # the byte-bounded cache may drop anything: the computed tables stay
    for at in viewers:
        for slug in SLUGS:
            at.switch_page(f"app_pages/{slug}.py").run()
            assert not at.exception, (slug, [e.value for e in at.exception])
            assert computing_lines(at) == [], slug
    assert calls == Counter({"plain.h5": 1, "slow.h5": 1})


def test_the_worker_computes_a_page_s_runs_first_one_at_a_time_and_keeps_errors():
    started, running, most = [], 0, 0
    gate, lock = threading.Event(), threading.Lock()

    def compute(key: str) -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        started.append(key)
        if key == "first":
            gate.wait(10)
        with lock:
            running -= 1
        if key == "bad":
            raise ValueError("bad: cannot read")
        return key.upper()

    work = Computations(compute)
    work.ask(["first", "a", "b", "bad"])
    while not started:
        time.sleep(0.01)
    assert work.wait(["b", "a"], timeout=0.05) == ["b", "a"]  # now ahead of "bad", in this order
    gate.set()
    futures = work.ask(["a", "b", "bad", "first"])
    assert [f.result(10) for f in futures[:2]] == ["A", "B"]
    with pytest.raises(ValueError, match="bad: cannot read"):
        futures[2].result(10)
    assert started == ["first", "b", "a", "bad"] and most == 1
    work.ask(["a", "bad"])
    assert started == ["first", "b", "a", "bad"]  # never again, the error included


@pytest.mark.parametrize("setting", ["soon", "-1", "inf", "nan"])
def test_an_unusable_wait_setting_is_named_and_the_default_used(monkeypatch, setting):
    monkeypatch.setenv("TDS_TABLES_WAIT_S", setting)
    assert load.wait_s() == (load.DEFAULT_WAIT_S, f"TDS_TABLES_WAIT_S={setting!r} is not a number of seconds; using 1")


def test_a_wait_setting_in_seconds_is_used(monkeypatch):
    monkeypatch.setenv("TDS_TABLES_WAIT_S", "0.25")
    assert load.wait_s() == (0.25, None)
