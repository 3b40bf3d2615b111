"""What runs show against the papers' claims, as numbers a README or a note can quote.

    python -m compute report artifacts/a.h5 artifacts/b.h5 ...

Per run (both category definitions where they differ): the share of shifted positions; the shifted share
early (positions 0-9), in the middle (10-49) and late (50 on); which token types the shifted positions are
(stylistic: discourse, politeness, punctuation, whitespace; against content: numbers, code, other words);
and the narrowing of the next-token distribution, exp(mean teacher-forced entropy) per side. For runs over
the same answers (a stage chain: equal answer token ids in every example), which of them shift each
position: the count of every pattern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compute.core import tables
from compute.core.artifact import Artifact, open_artifact
from compute.core.categories import ALIGNED_TOP_CHOICE, ANSWER_TOKEN, SHIFTED, categories, label
from compute.core.token_types import DISCOURSE, POLITENESS, PUNCTUATION, WHITESPACE, classify

POSITION_RANGES = ((0, 10), (10, 50), (50, None))
STYLISTIC = frozenset({DISCOURSE, POLITENESS, PUNCTUATION, WHITESPACE})


@dataclass(frozen=True)
class RunClaims:
    name: str
    positions: int
    shifted: dict[str, float]  # definition -> share of shifted positions
    shifted_by_range: dict[tuple[int, int | None], float]  # answer-token definition
    stylistic_among_shifted: float  # answer-token definition
    stylistic_overall: float
    exp_entropy: dict[str, float]  # side -> exp(mean teacher-forced entropy)


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else float("nan")


def run_claims(artifact: Artifact) -> RunClaims:
    shifted = {d: categories(artifact.read, d) == SHIFTED for d in (ANSWER_TOKEN, ALIGNED_TOP_CHOICE)}
    t = artifact.read("positions/t")
    by_range = {}
    for lo, hi in POSITION_RANGES:
        in_range = (t >= lo) & (t < hi) if hi is not None else t >= lo
        by_range[(lo, hi)] = _share(shifted[ANSWER_TOKEN][in_range])
    texts = artifact.token_texts()
    token_ids = artifact.read("positions/token_id")
    stylistic_ids = {i for i, text in texts.items() if classify(text) in STYLISTIC}
    stylistic = np.isin(token_ids, list(stylistic_ids))
    entropy = {
        side: math.exp(float(np.mean(artifact.read(f"sides/{side}/entropy"), dtype=np.float64)))
        for side in ("aligned", "base")
    }
    return RunClaims(
        name=artifact.name,
        positions=artifact.n_positions,
        shifted={d: _share(s) for d, s in shifted.items()},
        shifted_by_range=by_range,
        stylistic_among_shifted=_share(stylistic[shifted[ANSWER_TOKEN]]),
        stylistic_overall=_share(stylistic),
        exp_entropy=entropy,
    )


def share_answers(artifacts: list[Artifact]) -> bool:
    """True when every run holds the same examples with the same answer token ids."""
    hashes = [_answer_hashes(a) for a in artifacts]
    return all(h == hashes[0] for h in hashes[1:])


def _answer_hashes(artifact: Artifact) -> list[str]:
    ids = artifact.read("examples/id").tolist()
    return tables.answer_hashes(ids, artifact.read("examples/offsets"), artifact.read("positions/token_id"))


def shift_patterns(artifacts: list[Artifact], definition: str = ANSWER_TOKEN) -> dict[tuple[str, ...], int]:
    """For runs over the same answers: pattern (the names of the runs that shift a position) -> positions."""
    if not share_answers(artifacts):
        raise ValueError("the runs do not share their answers")
    bits = np.zeros(artifacts[0].n_positions, dtype=np.int64)
    for i, artifact in enumerate(artifacts):
        bits |= (categories(artifact.read, definition) == SHIFTED).astype(np.int64) << i
    counts = np.bincount(bits, minlength=1 << len(artifacts))
    return {
        tuple(a.name for i, a in enumerate(artifacts) if pattern >> i & 1): int(n)
        for pattern, n in enumerate(counts)
        if n
    }


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.1f} %"


def format_report(paths: list[Path]) -> str:
    artifacts = [open_artifact(p) for p in paths]
    lines = [
        "| run | positions | shifted (answer token / AlignTDS) | shifted at t 0-9 / 10-49 / 50+ "
        "| stylistic: of shifted / of all | exp(mean entropy) aligned / base |",
        "| --- | --: | --: | --: | --: | --: |",
    ]
    for artifact in artifacts:
        c = run_claims(artifact)
        by_range = " / ".join(_pct(v) for v in c.shifted_by_range.values())
        lines.append(
            f"| {c.name} | {c.positions:,} | {_pct(c.shifted[ANSWER_TOKEN])} / {_pct(c.shifted[ALIGNED_TOP_CHOICE])} "
            f"| {by_range} | {_pct(c.stylistic_among_shifted)} / {_pct(c.stylistic_overall)} "
            f"| {c.exp_entropy['aligned']:.2f} / {c.exp_entropy['base']:.2f} |"
        )
    if len(artifacts) > 1 and share_answers(artifacts):
        total = artifacts[0].n_positions
        for definition in (ANSWER_TOKEN, ALIGNED_TOP_CHOICE):
            title = f"Runs over the same answers: positions shifted ({label(definition)}) by exactly these runs"
            lines += ["", title, ""]
            lines += ["| shifted by | positions | share |", "| --- | --: | --: |"]
            patterns = shift_patterns(artifacts, definition)
            for pattern, n in sorted(patterns.items(), key=lambda item: -item[1]):
                lines.append(f"| {' + '.join(pattern) or 'none'} | {n:,} | {_pct(n / total)} |")
    return "\n".join(lines)
