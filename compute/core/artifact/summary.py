"""A run's headline numbers from its artifact (`tds info`, the shipped-run checks)."""

from __future__ import annotations

import numpy as np

from compute.core.artifact.reader import Artifact
from compute.core.artifact.verdicts import judged
from compute.core.categories import DEFINITIONS
from compute.core.categories import NAMES as CATEGORIES


def summarize(artifact: Artifact) -> dict[str, float]:
    """Shares of the three shift categories under both definitions, the share of positions where the answer
    token is the aligned side's top choice, the mean of every averaged statistic the file holds, and, for a
    judged task, `judged` (examples with a reference) and `accuracy` (share of them correct)."""
    n = artifact.n_positions
    summary: dict[str, float] = {"examples": artifact.n_examples, "positions": n}
    for definition in DEFINITIONS.values():
        counts = np.bincount(definition.categorise(artifact.read), minlength=3)
        for i, cat in enumerate(CATEGORIES):
            summary[f"{definition.summary_prefix}_{cat}"] = float(counts[i] / n) if n else float("nan")
    summary["answer_is_aligned_top"] = float(np.mean(artifact.read("sides/aligned/rank") == 0)) if n else float("nan")
    for dataset, stat, side in artifact.statistics():
        if stat.aggregate == "mean":
            mean = float(np.mean(artifact.read(dataset), dtype=np.float64)) if n else float("nan")
            summary[f"mean_{stat.column(side)}"] = mean
    verdicts = judged(artifact)
    if verdicts is not None:
        summary["judged"] = verdicts.judged
        summary["accuracy"] = verdicts.accuracy if verdicts.judged else float("nan")
    return summary
