"""What `tds info` prints about an artifact, and the line `tds run` ends with (no torch)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from compute.core import rules, side_identity
from compute.core.artifact.branching_samples import branching_attrs, has_branching, read_branching
from compute.core.artifact.reader import open_artifact
from compute.core.artifact.summary import summarize
from compute.core.branching import MIN_SAMPLES, run_branching_factor

SIDES = ("aligned", "base")


def summary_line(path: Path, seconds: float) -> str:
    """The line `tds run` ends with: what it wrote and what the run shows."""
    s = summarize(open_artifact(path))
    return (
        f"wrote {path}: {s['examples']} examples, {s['positions']} positions; "
        f"unshifted {s['share_unshifted']:.1%}, marginal {s['share_marginal']:.1%}, shifted {s['share_shifted']:.1%}; "
        f"mean KL {s['mean_kl']:.3f} nats"
        + (f", mean JS {s['mean_js']:.3f} nats" if "mean_js" in s else "")
        + (f"; accuracy {s['accuracy']:.1%} of {s['judged']} judged" if "accuracy" in s else "")
        + f"; {seconds:.1f} s"
    )


def side_differences(side_attrs: dict[str, dict[str, Any]]) -> str:
    """The aspects (compute/core/side_identity.py) in which the two sides differ, in words ("nothing" if none)."""
    return ", ".join(side_identity.differences(side_attrs["aligned"], side_attrs["base"])) or "nothing"


def describe(path: Path) -> str:
    """What `tds info` prints: the run, its sides and its summary, after the format check."""
    artifact = open_artifact(path)
    s = summarize(artifact)
    lines = [f"{path}: {artifact.name} (format v{artifact.attrs['format_version']}, top_k {artifact.top_k})"]
    lines.append(f"  created {artifact.attrs['created_utc']}, tool {artifact.attrs.get('tool_version', '?')}")
    for name in SIDES:
        a: dict[str, Any] = artifact.side_attrs[name]
        keys = ("gguf_file", "revision", "adapter", "adapter_revision")
        extra = ", ".join(
            [f"{k} {a[k]}" for k in keys if k in a] + ([f"system {a['system']!r}"] if "system" in a else [])
        )
        lines.append(
            f"  {name}: {a['model']} | template {a['template']!r} | {a['dtype']}" + (f" | {extra}" if extra else "")
        )
    lines.append(f"  the sides differ in: {side_differences(artifact.side_attrs)}")
    lines.append(f"  {s['examples']} examples, {s['positions']} positions")
    lines.append(
        f"  answer token: unshifted {s['share_unshifted']:.1%}  marginal {s['share_marginal']:.1%}  "
        f"shifted {s['share_shifted']:.1%}"
    )
    lines.append(
        f"  aligned top choice (AlignTDS): unshifted {s['aligntds_share_unshifted']:.1%}  "
        f"marginal {s['aligntds_share_marginal']:.1%}  shifted {s['aligntds_share_shifted']:.1%}; "
        f"answer token = aligned top choice at {s['answer_is_aligned_top']:.1%}"
    )
    means = [
        f"{stat.label}{f' {side}' if side else ''} {s['mean_' + stat.column(side)]:.4f}"
        for _, stat, side in artifact.statistics()
        if stat.aggregate == "mean"
    ]
    lines.append("  means (nats): " + "; ".join(means))
    if "decoding" in artifact.attrs:
        lines.append("  " + rules.describe(artifact.attrs))
    if "engine" in artifact.attrs:
        lines.append(f"  answers decoded by {artifact.attrs['engine']}")
    if "accuracy" in s:
        lines.append(
            f"  task {artifact.attrs.get('task', '?')}: accuracy {s['accuracy']:.1%} "
            f"({s['judged']} of {s['examples']} examples judged)"
        )
    if has_branching(artifact):
        bf = {name: run_branching_factor(read_branching(artifact, name)) for name in SIDES}
        n = branching_attrs(artifact, "aligned")["samples"]
        if any(math.isnan(value) for value in bf.values()):
            shown = ", ".join(f"{name} {'none' if math.isnan(bf[name]) else f'{bf[name]:.2f}'}" for name in SIDES)
            lines.append(
                f"  branching factor (BF paper, {n} samples per example): {shown} (no example has a position that "
                f"{MIN_SAMPLES} or more samples reach)"
            )
        else:
            lines.append(
                f"  branching factor (BF paper, {n} samples per example): aligned {bf['aligned']:.2f}, "
                f"base {bf['base']:.2f}; base / aligned {bf['base'] / bf['aligned']:.2f}"
            )
    return "\n".join(lines)
