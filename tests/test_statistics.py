"""The statistics registry: each statistic's chunked computation equals its naive reference, JS is the real
Jensen-Shannon divergence, and a statistic added to the registry flows through writer, reader and check."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import ROOT

from compute.core import statistics
from compute.core.artifact.examples import read_examples
from compute.core.artifact.reader import open_artifact
from compute.core.artifact.records import ExampleScores, RunMeta, SideContext
from compute.core.artifact.writer import write_artifact
from compute.core.statistics import STATISTICS, Chunk

K = 4


def random_logp(rows: int, vocab: int, seed: int, masked: float = 0.0) -> torch.Tensor:
    """Log-probabilities with some entries at probability 0 (as a top-k or top-p filter leaves them)."""
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(rows, vocab, generator=g)
    if masked:
        logits[torch.rand(rows, vocab, generator=g) < masked] = -math.inf
        logits[:, 0] = 0.0  # at least one entry left per row
    return torch.log_softmax(logits, dim=-1)


@pytest.mark.parametrize("masked", [0.0, 0.3], ids=["dense", "with-zero-probabilities"])
def test_every_statistic_equals_its_naive_reference(masked):
    logp = {"aligned": random_logp(6, 50, 1, masked), "base": random_logp(6, 50, 2, masked)}
    targets = torch.tensor([0, 3, 7, 0, 49, 11])
    computed = statistics.compute_chunk(Chunk(logp, targets, K))
    assert set(computed) == {dataset for _, dataset, _, _ in statistics.columns()}
    for stat in STATISTICS:
        for side in stat.sides():
            values = computed[stat.dataset(side)].numpy()
            for row in range(len(targets)):
                row_logp = {name: lp[row].double().numpy() for name, lp in logp.items()}
                naive = np.asarray(stat.naive(row_logp, int(targets[row]), K, side))
                own = row_logp[side or "aligned"]
                assert stat.agrees(values[row], naive, own, 1e-5), (stat.name, side, row, values[row], naive)


def test_js_is_zero_for_equal_sides_ln2_for_disjoint_ones_and_symmetric():
    js = statistics.BY_NAME["js"].compute
    same = random_logp(3, 20, 5)
    assert (
        js(Chunk({"aligned": same, "base": same.clone()}, torch.zeros(3, dtype=torch.long), K), None).abs().max() < 1e-6
    )
    disjoint_a = torch.log(torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    disjoint_b = torch.log(torch.tensor([[0.0, 0.0, 0.25, 0.75]]))
    chunk = Chunk({"aligned": disjoint_a, "base": disjoint_b}, torch.zeros(1, dtype=torch.long), 2)
    assert js(chunk, None).item() == pytest.approx(math.log(2), abs=1e-6)
    a, b = random_logp(4, 30, 6), random_logp(4, 30, 7)
    forward = js(Chunk({"aligned": a, "base": b}, torch.zeros(4, dtype=torch.long), K), None)
    backward = js(Chunk({"aligned": b, "base": a}, torch.zeros(4, dtype=torch.long), K), None)
    assert torch.allclose(forward, backward, atol=1e-6)
    kl = statistics.BY_NAME["kl"].compute(Chunk({"aligned": a, "base": b}, torch.zeros(4, dtype=torch.long), K), None)
    assert (forward <= kl + 1e-6).all() and (forward > 0).all()


def test_js_by_hand():
    """P = (1, 0), Q = (1/2, 1/2): M = (3/4, 1/4); JS = 1/2 ln(4/3) + 1/2 (1/2 ln(2/3) + 1/2 ln 2)."""
    p, q = torch.log(torch.tensor([[1.0, 0.0]])), torch.log(torch.tensor([[0.5, 0.5]]))
    expected = 0.5 * math.log(4 / 3) + 0.5 * (0.5 * math.log(2 / 3) + 0.5 * math.log(2))
    got = statistics.BY_NAME["js"].compute(Chunk({"aligned": p, "base": q}, torch.zeros(1, dtype=torch.long), 1), None)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    assert statistics.BY_NAME["js"].naive(
        {"aligned": p[0].double().numpy(), "base": q[0].double().numpy()}, 0, 1, None
    ) == (pytest.approx(expected, abs=1e-7))


def test_a_statistic_added_to_the_registry_is_written_read_back_and_listed(tmp_path, monkeypatch):
    """The registry is the only list: one more entry and the writer, reader and merge carry it."""
    extra = replace(
        statistics.BY_NAME["js"],
        name="top1_gap",
        scope="side",
        compute=lambda chunk, side: chunk.topk(side).values[:, 0] - chunk.chosen(side)[:, 0],
    )
    monkeypatch.setattr(statistics, "STATISTICS", (*STATISTICS, extra))
    logp = {"aligned": random_logp(3, 20, 1), "base": random_logp(3, 20, 2)}
    targets = torch.tensor([1, 2, 3])
    stats = {name: v.numpy() for name, v in statistics.compute_chunk(Chunk(logp, targets, K)).items()}
    assert "sides/base/top1_gap" in stats
    contexts = {side: SideContext(np.array([0, 5], dtype=np.int32)) for side in ("aligned", "base")}
    example = ExampleScores(0, "a", "p", "r", targets.numpy().astype(np.int32), contexts, stats)
    attrs = {"model": "m", "template": "t", "dtype": "float32"}
    path = tmp_path / "run.h5"
    write_artifact(
        path, RunMeta("run", K, {"aligned": attrs, "base": attrs}), [example], {i: str(i) for i in range(20)}
    )
    artifact = open_artifact(path)
    assert ("sides/aligned/top1_gap", extra, "aligned") in artifact.statistics()
    (back,) = read_examples(artifact)
    assert np.array_equal(back.stats["sides/base/top1_gap"], stats["sides/base/top1_gap"])


def test_the_registry_imports_without_torch():
    modules = "compute.core.statistics, compute.core.artifact.writer, compute.core.artifact.reader"
    code = f"import sys, {modules}; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
