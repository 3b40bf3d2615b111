"""Time every dashboard page on two synthetic ~1M-position runs, or at team scale.

    python -m benchmarks.dashboard [--examples 3000] [--keep DIR]
    python -m benchmarks.dashboard --scale DIR [--browser]

(run as a module from the repository root: as `python benchmarks/dashboard.py` this file would shadow the
dashboard package it times)

Default: writes two artifacts (same answers, different base ranks: the worst case for
Compare) to a temp dir, then, per page under Streamlit's AppTest: a first load
with every cache cleared, and a rerun (cached). Prints one table with the peak
RSS of this process (the server's share: AppTest runs the app in-process).

--scale: writes one 1M-position run with its aggregates and 49 copies under other
names, and one 10M-position run with a copy (identical answers), in DIR (kept for
reruns); then, each in a fresh process, 1, 8 and 50 runs of 1M (every run picked)
and the two 10M runs: first visit and warm revisit of every page and the peak RSS.
With --browser the same in a real `streamlit run` server driven by headless Chromium
(the server's peak RSS from /proc), where a viewer gets the default 8 runs picked.

--no-tables DIR: writes one 1M-position run WITHOUT stored tables and 49 copies in
DIR/runs-1m (kept), then, each in a fresh process, a new viewer on the Overview with
the default 8 runs picked and with all 50: when the first page is drawn, when it
first shows a run, when it shows every picked run (rerun once another run is ready,
as the page's own refresh does), and the peak RSS. To measure another checkout's dashboard (the
before of a change), copy this file into that checkout's benchmarks/ and run it from that checkout's root.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from compute.core.artifact.reader import open_artifact
from compute.core.artifact.records import ExampleScores, RunMeta, SideContext
from compute.core.artifact.writer import write_artifact
from dashboard import featured
from dashboard.pages import PAGES as PAGE_LIST
from dashboard.pages import SLUGS as PAGES

ROOT = Path(__file__).resolve().parent.parent
SELF = [sys.executable, "-m", "benchmarks.dashboard"]  # this script in a fresh process (run from ROOT)

VOCAB, TOP_K = 32_000, 10
FIRST_TARGET_S, CACHED_TARGET_S, RSS_TARGET_MB = 10.0, 2.0, 2048
COMMON = [
    " the",
    ",",
    ".",
    "\n",
    "\n\n",
    " and",
    " to",
    " of",
    " a",
    " is",
    "Sure",
    " However",
    "!",
    " 1",
    "2",
    "(",
    ")",
]
COMMON += [" I", " Thank", " happy", " help", " AI", " sorry", "```", " =", " return", ":", "*", " Additionally", " -"]


def token_text() -> dict[int, str]:
    return {i: COMMON[i] if i < len(COMMON) else f" w{i}" for i in range(VOCAB)}


def base_ranks(rng: np.random.Generator, n: int) -> np.ndarray:
    """~75% rank 0, ~10% rank 1-2, the rest a long geometric tail from 3."""
    u = rng.random(n)
    tail = 3 + rng.geometric(0.05, n)
    return np.where(u < 0.75, 0, np.where(u < 0.85, rng.integers(1, 3, n), tail)).astype(np.int32)


def side(rng: np.random.Generator, name: str, ids: np.ndarray, ranks: np.ndarray, entropy: np.ndarray) -> dict:
    n = len(ids)
    topk = rng.integers(0, VOCAB, (n, TOP_K), dtype=np.int32)
    topk[ranks == 0, 0] = ids[ranks == 0]
    logprobs = np.sort(np.log(rng.dirichlet(np.ones(TOP_K * 3), n)[:, :TOP_K]).astype(np.float32), axis=1)[:, ::-1]
    return {
        f"sides/{name}/topk_ids": topk,
        f"sides/{name}/topk_logprobs": np.ascontiguousarray(logprobs),
        f"sides/{name}/logprob": np.where(ranks == 0, logprobs[:, 0], logprobs[:, -1] - 1).astype(np.float32),
        f"sides/{name}/rank": ranks,
        f"sides/{name}/entropy": entropy.astype(np.float32),
    }


def context(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, VOCAB, 40, dtype=np.int32)


def write_run(path: Path, n_examples: int, seed: int, extra=None, order: np.ndarray | None = None) -> None:
    """A synthetic run; every seed gives the same answers (same ids, same tokens) with other statistics.
    `extra` is write_artifact's hook (aggregates.write_into stores the aggregates); `order` reorders examples."""
    answers = np.random.default_rng(0)  # every run shares answers (same examples, same tokens)
    rng = np.random.default_rng(seed)
    examples = []
    for e in range(n_examples):
        n = int(answers.integers(20, 640))
        ids = (np.minimum(answers.zipf(1.3, n), VOCAB) - 1).astype(np.int32)
        ranks = base_ranks(rng, n)
        aligned_ranks = np.where(rng.random(n) < 0.9, 0, rng.integers(1, 5, n)).astype(np.int32)
        entropy_base = rng.gamma(1.5, 1.2, n)
        kl = (rng.exponential(0.3, n) * (1 + (ranks >= 3))).astype(np.float32)
        examples.append(
            ExampleScores(
                index=e,
                id=f"ex-{e:05d}",
                prompt=f"Question {e}: explain something in a few paragraphs.",
                response="(synthetic)",
                token_ids=ids,
                contexts={
                    "aligned": SideContext(context(rng), f"<s>[INST] Question {e} [/INST]"),
                    "base": SideContext(context(rng), f"<s>Question {e}\n"),
                },
                stats={
                    "positions/kl": kl,
                    "positions/js": np.minimum(kl / 4, np.log(2)).astype(np.float32),
                    **side(rng, "aligned", ids, aligned_ranks, rng.gamma(0.5, 0.6, n)),
                    **side(rng, "base", ids, ranks, entropy_base),
                },
            )
        )
    attrs = {"model": "synthetic", "template": "none", "dtype": "float32"}
    meta = RunMeta(name=path.stem, top_k=TOP_K, side_attrs={"aligned": attrs, "base": attrs})
    if order is not None:
        examples = [examples[i] for i in order]
    write_artifact(path, meta, examples, token_text(), extra=extra)


def rss_mb() -> tuple[float, float]:
    """Current and peak resident memory of this process, MB."""
    current = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clear_caches() -> None:
    import streamlit as st

    from dashboard.cache import CACHE

    st.cache_data.clear()
    st.cache_resource.clear()
    CACHE.clear()


def time_pages(directory: Path) -> list[tuple[str, float, float, float]]:
    from streamlit.testing.v1 import AppTest

    os.environ["TDS_ARTIFACTS_DIR"] = str(directory)
    app = str(ROOT / "dashboard" / "app.py")
    rows = []
    for page in PAGES:
        clear_caches()
        at = AppTest.from_file(app, default_timeout=120)
        start = time.perf_counter()
        at.run()
        if page != "overview":
            clear_caches()  # the overview just warmed the caches: empty them again
            at.switch_page(f"app_pages/{page}.py")
            start = time.perf_counter()
            at.run()
        first = time.perf_counter() - start
        assert not at.exception, [e.value for e in at.exception]
        start = time.perf_counter()
        at.run()
        cached = time.perf_counter() - start
        assert not at.exception, [e.value for e in at.exception]
        rows.append((page, first, cached, rss_mb()[1]))
    return rows


# ------------------------------------------------------------------ --scale: many runs, and two of 10M positions

SCALE_VIEWS = (1, 8, 50)
BIG_FACTOR = 10  # the big run has ten times the examples: ~10M positions
SCALE_GOALS = (
    "50 runs of 1M < 2048 MB peak; in the browser with 8 of them picked every page < 1 s in a new session and"
    " < 0.5 s in-app, with all 50 picked < 2 s; Compare 10M: < 1 GB extra, < 2 s"
)


def write_in_process(path: Path, examples: int, seed: int) -> None:
    """Write one synthetic run with its aggregates in a separate process (the writer's memory is not the app's)."""
    if path.exists():
        return
    cmd = [*SELF, "--write", str(path), "--seed", str(seed), "--examples", str(examples)]
    if subprocess.run([*cmd, "--with-aggregates"], cwd=ROOT).returncode:
        sys.exit(f"writing {path} failed")


def scale_artifacts(directory: Path, examples: int) -> dict[str, tuple[str, Path]]:
    """One 1M run and 49 copies, one 10M run and a copy (every copy a new file: its own cache keys), and one
    folder per view holding links to the runs it shows: view id -> (its name in the tables, its folder)."""
    runs, big = directory / "runs-1m", directory / "runs-10m"
    for folder in (runs, big):
        folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    write_in_process(runs / "run-00.h5", examples, 1)
    for i in range(1, max(SCALE_VIEWS)):
        if not (runs / f"run-{i:02d}.h5").exists():
            shutil.copy(runs / "run-00.h5", runs / f"run-{i:02d}.h5")
    write_in_process(big / "big-a.h5", examples * BIG_FACTOR, 1)
    if not (big / "big-b.h5").exists():
        shutil.copy(big / "big-a.h5", big / "big-b.h5")
    print(f"artifacts in {directory} ready in {time.perf_counter() - started:.0f} s")
    views = {}
    for n in SCALE_VIEWS:
        view = directory / f"view-{n}"
        view.mkdir(exist_ok=True)
        for i in range(n):
            link = view / f"run-{i:02d}.h5"
            if not link.exists():
                link.symlink_to(runs / f"run-{i:02d}.h5")
        views[str(n)] = (f"{n} x 1M", view)
    every = directory / f"view-{max(SCALE_VIEWS)}-all"  # the same runs, all opened on (the browser's 50 picked)
    every.mkdir(exist_ok=True)
    for link in views[str(max(SCALE_VIEWS))][1].iterdir():
        if not (every / link.name).exists():
            (every / link.name).symlink_to(link.resolve())
    (every / featured.FILE).write_text("run-00\n")  # every copy of run-00 keeps its name: all of them featured
    views["all"] = (f"{max(SCALE_VIEWS)} x 1M, all picked", every)
    views["10M"] = ("2 x 10M", big)
    return views


def measure_app(directory: Path) -> dict:
    """In this (fresh) process: every run picked, each page's first visit and a warm revisit under AppTest,
    and the peak RSS; on two runs also Compare's extra memory."""
    from streamlit.testing.v1 import AppTest

    os.environ["TDS_ARTIFACTS_DIR"] = str(directory)
    base = rss_mb()[0]
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)
    start = time.perf_counter()
    at.run()  # the app's own start (imports, Streamlit's component scan) and the default 8 runs
    startup = time.perf_counter() - start
    start = time.perf_counter()
    at.sidebar.multiselect[0].set_value(at.sidebar.multiselect[0].options).run()
    pages = {"overview": {"first": time.perf_counter() - start}}
    for page in PAGES:
        before = rss_mb()[0]
        if page != "overview":
            at.switch_page(f"app_pages/{page}.py")
            start = time.perf_counter()
            at.run()
            pages[page] = {"first": time.perf_counter() - start}
        assert not at.exception, [e.value for e in at.exception]
        pages[page]["extra_mb"] = rss_mb()[1] - before
    for page in PAGES:  # warm: every page again, in the same session
        at.switch_page(f"app_pages/{page}.py")
        start = time.perf_counter()
        at.run()
        pages[page]["warm"] = time.perf_counter() - start
        assert not at.exception, [e.value for e in at.exception]
    shown = at.sidebar.caption[0].value
    return {"pages": pages, "peak_mb": rss_mb()[1], "base_mb": base, "startup": startup, "shown": shown}


REPEATS = 3  # warm revisits and new sessions: the best of this many
WATCH_SCRIPT_STATE = """
window.tdsScriptRan = false;
const app = document.querySelector('[data-testid="stApp"]');
new MutationObserver(() => { window.tdsScriptRan = true; })
    .observe(app, {attributes: true, attributeFilter: ["data-test-script-state"]});
"""  # in-app navigation: a flag set once the script state changes (a run started), so the old page never counts


def measure_browser(directory: Path) -> dict:
    """A real server and headless Chromium, the runs the folder opens on picked (featured.txt, else the default 8):
    per page its first visit in one session, the best of REPEATS warm revisits in that session (a click in the
    sidebar) and the best of REPEATS new sessions (the page's address loaded afresh: a browser refresh, the way a
    colleague opens a shared link); and the server's peak RSS."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = 8600 + os.getpid() % 300
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TDS_ARTIFACTS_DIR": str(directory)}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.headless", "true"]
    cmd += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in "--headless --no-sandbox --disable-gpu --window-size=1400,2000 --disable-dev-shm-usage".split():
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, 600, poll_frequency=0.05)
    titles = {page.slug: page.title for page in PAGE_LIST}

    def settled(d) -> bool:
        """The script has finished, nothing is still a skeleton, and every Plotly chart has drawn its SVG."""
        done = d.find_elements(By.CSS_SELECTOR, '[data-testid="stApp"][data-test-script-state="notRunning"] h2')
        if not done or d.find_elements(By.CSS_SELECTOR, '[data-testid^="stSkeleton"]'):
            return False
        charts = d.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"]')
        return all(chart.find_elements(By.CSS_SELECTOR, ".main-svg") for chart in charts)

    def new_session(page: str) -> float:
        start = time.perf_counter()
        driver.get(url if page == PAGES[0] else f"{url}/{page}")
        wait.until(settled)
        return time.perf_counter() - start

    def in_app(page: str) -> float:
        driver.execute_script(WATCH_SCRIPT_STATE)  # the old page is "settled" until the click's run starts
        start = time.perf_counter()
        links = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
        next(link for link in links if link.text.strip().endswith(titles[page])).click()  # after its icon
        wait.until(lambda d: d.execute_script("return window.tdsScriptRan") and settled(d))
        return time.perf_counter() - start

    pages: dict[str, dict[str, float]] = {}
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        pages[PAGES[0]] = {"first": new_session(PAGES[0])}
        for page in PAGES[1:]:
            pages[page] = {"first": in_app(page)}
        warm: dict[str, list[float]] = {page: [] for page in PAGES}
        for _ in range(REPEATS):
            for page in (*PAGES[1:], PAGES[0]):
                warm[page].append(in_app(page))
        for page in PAGES:
            pages[page]["warm"] = min(warm[page])
            pages[page]["new"] = min(new_session(page) for _ in range(REPEATS))
        status = Path(f"/proc/{server.pid}/status").read_text()
        peak = next(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:"))
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=30)
    return {"pages": pages, "peak_mb": peak}


def scale(directory: Path, examples: int, browser: bool, only: list[str] | None) -> None:
    views = scale_artifacts(directory, examples)
    one = directory / "runs-1m" / "run-00.h5"
    big = directory / "runs-10m" / "big-a.h5"
    for path in (one, big):
        artifact = open_artifact(path)
        size = path.stat().st_size / 2**20
        print(f"{path.name}: {artifact.n_examples} examples, {artifact.n_positions} positions, {size:.0f} MB")
    subprocess.run([*SELF, "--time-aggregates", str(one)], cwd=ROOT)
    modes = ["app", "browser"] if browser else ["app"]
    for mode in modes:
        notes: list[str] = []
        if mode == "app":
            print("\nAppTest, every run picked, s: first visit / warm revisit")
        else:
            print("\nbrowser, the runs the folder opens on picked, s: first / warm in-app / new session (best of 3)")
        print(f"| runs | peak RSS MB | {' | '.join(PAGES)} |\n|{'---|' * (2 + len(PAGES))}")
        for view_id, (name, view) in views.items():
            if (only and view_id not in only) or (mode == "app" and view_id == "all"):  # AppTest picks every run
                continue
            out = subprocess.run(
                [*SELF, "--measure", str(view), "--mode", mode], capture_output=True, text=True, cwd=ROOT
            )
            if out.returncode:
                print(f"| {name} | failed: {out.stderr.strip().splitlines()[-1:]} |")
                continue
            result = json.loads(out.stdout.strip().splitlines()[-1])
            keys = ("first", "warm") if mode == "app" else ("first", "warm", "new")
            cells = [" / ".join(f"{result['pages'][p][k]:.2f}" for k in keys) for p in PAGES]
            print(f"| {name} | {result['peak_mb']:.0f} | {' | '.join(cells)} |", flush=True)
            if mode == "app":
                notes.append(f"{name}: {result['shown']}; app start with the default runs {result['startup']:.2f} s")
            if mode == "app" and view_id == "10M":
                compare = result["pages"]["compare"]
                notes.append(
                    f"Compare on two 10M runs: first {compare['first']:.2f} s, +{compare['extra_mb']:.0f} MB peak"
                )
        print("\n".join(notes))
    print(f"\nGoals: {SCALE_GOALS}")


# ------------------------------------------------------------------ --no-tables: runs that store no tables

REFRESH_S = 1.0  # how often the measured viewer looks whether another run is ready (then reruns the Overview)


def no_tables_folder(directory: Path, examples: int) -> Path:
    """One 1M run without stored tables and 49 copies (every copy a new file: its own cache keys)."""
    runs = directory / "runs-1m"
    runs.mkdir(parents=True, exist_ok=True)
    first = runs / "run-00.h5"
    if not first.exists():
        cmd = [*SELF, "--write", str(first), "--seed", "1", "--examples", str(examples)]
        if subprocess.run(cmd, cwd=ROOT).returncode:
            sys.exit(f"writing {first} failed")
    for i in range(1, max(SCALE_VIEWS)):
        if not (runs / f"run-{i:02d}.h5").exists():
            shutil.copy(first, runs / f"run-{i:02d}.h5")
    return runs


def overview_rows(at) -> int:
    """How many runs the Overview's table shows (0 where it drew none)."""
    return next((len(frame.value) for frame in at.dataframe if "run" in frame.value.columns), 0)


def measure_no_tables(directory: Path, picked: str) -> dict:
    """In this (fresh) process: a new viewer on the Overview with the default runs or every run picked; seconds
    to the first page, to the first run shown and to every picked run shown, and the peak RSS."""
    from streamlit.testing.v1 import AppTest

    import dashboard
    from dashboard import load

    os.environ["TDS_ARTIFACTS_DIR"] = str(directory)
    at = AppTest.from_file(str(Path(dashboard.__file__).parent / "app.py"), default_timeout=3600)
    if picked == "all":
        at.session_state["runs"] = [run.label for run in load.open_runs(load.scan(directory)[0])[0]]
    start = time.perf_counter()
    at.run()
    first_page = time.perf_counter() - start
    assert not at.exception, [e.value for e in at.exception]
    wanted, shown = len(at.session_state["runs"]), overview_rows(at)
    first_run = first_page if shown else None
    keys = [key for key in load.scan(directory)[0] if Path(key.path).name.startswith("run-")]
    ready = lambda: sum(load._computations().done(key) for key in keys)  # noqa: E731
    while shown < wanted:
        time.sleep(REFRESH_S)
        if hasattr(load, "_computations") and ready() <= shown:
            continue  # as the page's own refresh: a rerun once another run is ready
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        shown = overview_rows(at)
        if shown and first_run is None:
            first_run = time.perf_counter() - start
    every = time.perf_counter() - start
    return {"picked": wanted, "first_page": first_page, "first_run": first_run, "all": every, "peak_mb": rss_mb()[1]}


def no_tables(directory: Path, examples: int) -> None:
    runs = no_tables_folder(directory, examples)
    print(f"{len(list(runs.glob('*.h5')))} runs without stored tables in {runs}; load: {os.getloadavg()}")
    print("\n| picked | first page s | first run shown s | all shown s | peak RSS MB |\n|---|---|---|---|---|")
    for picked in ("default", "all"):
        cmd = [*SELF, "--measure-no-tables", str(runs), "--picked", picked]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            print(f"| {picked} | failed: {out.stderr.strip().splitlines()[-1:]} |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {r['picked']} | {r['first_page']:.2f} | {r['first_run']:.2f} | {r['all']:.2f} | {r['peak_mb']:.0f} |")
    print(f"load after: {os.getloadavg()}")


def time_aggregates(path: Path) -> None:
    """How long computing a run's aggregates takes, and how big they are."""
    from compute.core import aggregates

    start = time.perf_counter()
    tables = aggregates.compute(open_artifact(path))
    took = time.perf_counter() - start
    size = sum(t.estimated_size() for t in tables.values()) / 2**20
    print(f"{path.name}: aggregates computed in {took:.2f} s, {size:.2f} MB in memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--keep", type=Path, help="write the artifacts here and keep them")
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)  # internal: write one run and exit
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--with-aggregates", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=Path, metavar="DIR", help="the team-scale measurements, artifacts kept in DIR")
    parser.add_argument("--browser", action="store_true", help="with --scale: also in a real server and Chromium")
    parser.add_argument(
        "--views",
        help="with --scale: only these views, comma-separated, of 1, 8, 50, all (50 with every run picked), 10M",
    )
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: measure one view, print JSON
    parser.add_argument("--mode", choices=("app", "browser"), default="app", help=argparse.SUPPRESS)
    parser.add_argument("--time-aggregates", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-tables", type=Path, metavar="DIR", help="50 runs without stored tables, kept in DIR")
    parser.add_argument("--measure-no-tables", type=Path, help=argparse.SUPPRESS)  # internal: one viewer, JSON
    parser.add_argument("--picked", choices=("default", "all"), default="default", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        from compute.core.aggregates import write_into

        write_run(args.write, args.examples, args.seed, extra=write_into if args.with_aggregates else None)
        return
    if args.measure:
        print(json.dumps(measure_app(args.measure) if args.mode == "app" else measure_browser(args.measure)))
        return
    if args.measure_no_tables:
        print(json.dumps(measure_no_tables(args.measure_no_tables, args.picked)))
        return
    if args.no_tables:
        no_tables(args.no_tables, args.examples)
        return
    if args.time_aggregates:
        time_aggregates(args.time_aggregates)
        return
    if args.scale:
        scale(args.scale, args.examples, args.browser, args.views.split(",") if args.views else None)
        return

    directory = args.keep or Path(tempfile.mkdtemp(prefix="tds-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    writers = [
        subprocess.Popen(
            [*SELF, "--write", str(directory / f"run-{s}.h5"), "--seed", str(s), "--examples", str(args.examples)],
            cwd=ROOT,
        )
        for s in (1, 2)
        if not (directory / f"run-{s}.h5").exists()
    ]  # separate processes: the writer's memory is not the dashboard's
    if any(w.wait() for w in writers):
        sys.exit("writing the synthetic artifacts failed")
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.0f} MB" for p in sorted(directory.glob("*.h5")))
    print(f"artifacts in {directory} ({sizes}), written in {time.perf_counter() - start:.0f} s")

    for path in sorted(directory.glob("*.h5")):
        artifact = open_artifact(path)
        print(f"{path.name}: {artifact.n_examples} examples, {artifact.n_positions} positions, top_k {artifact.top_k}")

    rows = time_pages(directory)
    print(f"\n| page | first load s | cached rerun s | peak RSS MB | target | ok |\n|{'---|' * 6}")
    for page, first, cached, peak in rows:
        ok = first < FIRST_TARGET_S and cached < CACHED_TARGET_S and peak < RSS_TARGET_MB
        target = f"<{FIRST_TARGET_S:g} / <{CACHED_TARGET_S:g} s, <{RSS_TARGET_MB} MB"
        print(f"| {page} | {first:.2f} | {cached:.2f} | {peak:.0f} | {target} | {'yes' if ok else 'NO'} |")


if __name__ == "__main__":
    main()
