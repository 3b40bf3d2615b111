"""Time every dashboard page on two synthetic ~1M-position runs.

    python benchmarks/dashboard.py [--examples 3000] [--keep DIR]

Writes two artifacts (same answers, different base ranks: the worst case for
Compare) to a temp dir, then, per page under Streamlit's AppTest: a first load
with every cache cleared, and a rerun (cached). Prints one table with the peak
RSS of this process (the server's share: AppTest runs the app in-process).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compute.artifact import ExampleScores, RunMeta, SideContext, open_artifact, write_artifact  # noqa: E402

VOCAB, TOP_K = 32_000, 10
PAGES = ("overview", "positions", "token_types", "examples", "compare")
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


def time_pages(directory: Path) -> list[tuple[str, float, float, float]]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["TDS_ARTIFACTS_DIR"] = str(directory)
    app = str(ROOT / "dashboard" / "app.py")
    rows = []
    for page in PAGES:
        st.cache_data.clear()
        st.cache_resource.clear()
        at = AppTest.from_file(app, default_timeout=120)
        start = time.perf_counter()
        at.run()
        if page != "overview":
            st.cache_data.clear()  # the overview just warmed the caches: empty them again
            st.cache_resource.clear()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--keep", type=Path, help="write the artifacts here and keep them")
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)  # internal: write one run and exit
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        write_run(args.write, args.examples, args.seed)
        return

    directory = args.keep or Path(tempfile.mkdtemp(prefix="tds-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--write",
                str(directory / f"run-{s}.h5"),
                "--seed",
                str(s),
                "--examples",
                str(args.examples),
            ]
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
