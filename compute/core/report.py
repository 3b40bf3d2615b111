"""What runs show against the papers' claims, as numbers a README or a note can quote, each with its interval.

    python -m compute report artifacts/a.h5 artifacts/b.h5 ...
    python -m compute report --json artifacts/a.h5 ...   (docs/report-json.md)

Per run (both category definitions where they differ): the share of shifted positions; the shifted share
early (positions 0-9), in the middle (10-49) and late (50 on); which token types the shifted positions are
(stylistic: discourse, politeness, punctuation, whitespace; against content: numbers, code, other words);
the narrowing of the next-token distribution, exp(mean teacher-forced entropy) per side; KL and JS with their
quantiles and top-k agreement; accuracy and inserted share where a run has them; the BF paper's branching
factor. Every number "value [low, high]": a 95 % percentile cluster bootstrap over examples
(compute/core/intervals.py). For runs over the same answers (equal answer token ids in every example), the
paired difference of each number and which of them shift each position; for judged runs over the same
problems, the paired accuracy difference and an exact McNemar test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from compute.core import findings
from compute.core.artifact.decoding import decoding
from compute.core.artifact.reader import Artifact, open_artifact
from compute.core.categories import ALIGNED_TOP_CHOICE, ANSWER_TOKEN, SHIFTED, categories, label
from compute.core.control import format_controls
from compute.core.estimates import RESAMPLES, SEED
from compute.core.findings import RunFindings, share_answers  # noqa: F401 (share_answers: the report's own word)
from compute.core.intervals import Estimate

RANGE_SUFFIXES = ("t0_9", "t10_49", "t50_")


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


def pct(e: Estimate | None) -> str:
    """ "1.3 % [0.9, 1.8]"; "–" where the number is undefined."""
    if e is None or math.isnan(e.value):
        return "–"
    if math.isnan(e.low):
        return _pct(e.value)
    return f"{100 * e.value:.1f} % [{100 * e.low:.1f}, {100 * e.high:.1f}]"


def num(e: Estimate | None, digits: int = 2) -> str:
    """ "3.60 [3.23, 4.02]"."""
    if e is None or math.isnan(e.value):
        return "–"
    if math.isnan(e.low):
        return f"{e.value:.{digits}f}"
    return f"{e.value:.{digits}f} [{e.low:.{digits}f}, {e.high:.{digits}f}]"


def diff(e: Estimate | None, percent: bool = True) -> str:
    """A paired difference: "+0.9 pp [+0.5, +1.3]", marked "(not shown: includes 0)" where the interval does."""
    if e is None or math.isnan(e.value):
        return "–"
    scale, unit, digits = (100, " pp", 1) if percent else (1, "", 3)
    text = f"{scale * e.value:+.{digits}f}{unit} [{scale * e.low:+.{digits}f}, {scale * e.high:+.{digits}f}]"
    return text + (" (not shown: includes 0)" if includes_zero(e) else "")


def includes_zero(e: Estimate) -> bool:
    return not (e.low > 0 or e.high < 0)


def _run_rows(found: list[RunFindings]) -> list[str]:
    lines = [
        "| run | examples / positions | shifted (answer token / AlignTDS) | shifted at t 0-9 / 10-49 / 50+ "
        "| stylistic: of shifted / of all | exp(mean entropy) aligned / base |",
        "| --- | --: | --: | --: | --: | --: |",
    ]
    for f in found:
        a, b = f.numbers[ANSWER_TOKEN], f.numbers[ALIGNED_TOP_CHOICE]
        by_range = " / ".join(pct(a.get(f"share_shifted_{s}")) for s in RANGE_SUFFIXES)
        lines.append(
            f"| {f.name} | {f.artifact.n_examples:,} / {f.artifact.n_positions:,} "
            f"| {pct(a['share_shifted'])} / {pct(b['share_shifted'])} | {by_range} "
            f"| {pct(a.get('stylistic_of_shifted'))} / {pct(a.get('stylistic_of_all'))} "
            f"| {num(a.get('exp_entropy_aligned'))} / {num(a.get('exp_entropy_base'))} |"
        )
    return lines


def _divergence_rows(found: list[RunFindings]) -> list[str]:
    lines = [
        "",
        "KL(P_aligned ‖ P_base) and JS: mean and quantiles over positions; top-k agreement: where one side's top-1 "
        "token stands in the other's top-k",
        "",
        "| run | mean KL | KL q50 / q90 / q99 / max | mean JS | aligned top-1 in base top-1 / 5 / 10 "
        "| base top-1 in aligned top-5 / 10 |",
        "| --- | --: | --: | --: | --: | --: |",
    ]
    for f in found:
        a = f.numbers[ANSWER_TOKEN]
        quantiles = " / ".join(num(a.get(f"kl_{q}"), 3) for q in ("q50", "q90", "q99", "max"))
        aligned = " / ".join(pct(a.get(f"aligned_top1_in_top{k}")) for k in (1, 5, 10))
        base = " / ".join(pct(a.get(f"base_top1_in_top{k}")) for k in (5, 10))
        lines.append(
            f"| {f.name} | {num(a.get('mean_kl'), 3)} | {quantiles} | {num(a.get('mean_js'), 3)} | {aligned} | {base} |"
        )
    return lines


def _other_rows(found: list[RunFindings]) -> list[str]:
    lines = []
    for f in found:
        a = f.numbers[ANSWER_TOKEN]
        parts = []
        if "accuracy" in a:
            parts.append(f"accuracy {pct(a['accuracy'])} (bootstrap over problems)")
        side = findings.inserted_side(*decoding(f.artifact))
        if side is not None and f"share_from_{side}" in a:
            parts.append(f"tokens from the inserted {side} side {pct(a[f'share_from_{side}'])}")
        if f.branching:
            bf = f.branching
            parts.append(
                f"branching factor aligned {num(bf['bf_aligned'])}, base {num(bf['bf_base'])}, "
                f"base / aligned {num(bf['bf_ratio'])}"
            )
        if parts:
            lines.append(f"- {f.name}: " + "; ".join(parts))
    return ["", *lines] if lines else []


PAIRED = (
    ("shifted (answer token)", ANSWER_TOKEN, "share_shifted", True),
    ("shifted (AlignTDS)", ALIGNED_TOP_CHOICE, "share_shifted", True),
    ("shifted at t 0-9", ANSWER_TOKEN, "share_shifted_t0_9", True),
    ("mean KL", ANSWER_TOKEN, "mean_kl", False),
    ("exp(mean entropy) base / aligned", ANSWER_TOKEN, "exp_entropy_ratio", False),
)


def _paired_rows(paired: list[dict]) -> list[str]:
    if not paired:
        return []
    head = " | ".join(label for label, *_ in PAIRED)
    lines = ["", "Runs over the same answers: paired differences (a - b, the same resamples of examples for both)", ""]
    lines += [f"| a - b | {head} |", "| --- |" + " --: |" * len(PAIRED)]
    for p in paired:
        cells = []
        for _, definition, name, percent in PAIRED:
            found = p["differences"][definition].get(name)
            cells.append(diff(_estimate(found), percent) if found else "–")
        lines.append(f"| {p['a']} - {p['b']} | " + " | ".join(cells) + " |")
    return lines


def _judged_rows(judged: list[dict]) -> list[str]:
    if not judged:
        return []
    lines = ["", "Judged runs over the same problems: paired accuracy difference and exact McNemar test", ""]
    lines += ["| a - b | problems | accuracy difference | right only in a / only in b | McNemar p |"]
    lines += ["| --- | --: | --: | --: | --: |"]
    for j in judged:
        lines.append(
            f"| {j['a']} - {j['b']} | {j['problems']} | {diff(_estimate(j['accuracy_difference']))} "
            f"| {j['right_only_in_a']} / {j['right_only_in_b']} | {j['mcnemar_exact_p']:.3g} |"
        )
    return lines


def _estimate(d: dict) -> Estimate:
    def f(x):
        return float("nan") if x is None else x

    return Estimate(f(d["value"]), f(d["low"]), f(d["high"]), d["n"])


def _pattern_rows(artifacts: list[Artifact]) -> list[str]:
    lines = []
    total = artifacts[0].n_positions
    for definition in (ANSWER_TOKEN, ALIGNED_TOP_CHOICE):
        lines += ["", f"Runs over the same answers: positions shifted ({label(definition)}) by exactly these runs", ""]
        lines += ["| shifted by | positions | share |", "| --- | --: | --: |"]
        patterns = shift_patterns(artifacts, definition)
        for pattern, n in sorted(patterns.items(), key=lambda item: -item[1]):
            lines.append(f"| {' + '.join(pattern) or 'none'} | {n:,} | {_pct(n / total)} |")
    return lines


def format_report(paths: list[Path | str], resamples: int = RESAMPLES, seed: int = SEED) -> str:
    found = [findings.run_findings(open_artifact(p), resamples, seed) for p in paths]
    paired, judged = findings.comparisons_of(found, resamples, seed)
    lines = _run_rows(found) + _divergence_rows(found) + _other_rows(found)
    lines += _paired_rows(paired) + _judged_rows(judged)
    artifacts = [f.artifact for f in found]
    if len(artifacts) > 1 and share_answers(artifacts):
        lines += _pattern_rows(artifacts)
    controls = format_controls(artifacts, resamples, seed)
    if controls:
        lines += ["", controls]
    lines += ["", f"Intervals: 95 % percentile cluster bootstrap over examples ({resamples} resamples, seed {seed})."]
    return "\n".join(lines)
