"""Stages: runs scored over the same answers (a stage chain), position by position: which pairs shift each one.

A position's *pattern* is the set of runs (pairs of sides) that shift it, as a bitmask: bit i for run i. The
pages feed positions in blocks (dashboard/load.py shared_blocks); here they are counted by pattern, position
bin and token type, and the first few positions of every pattern are kept to click through to. The runs are
ordered along the chain their sides make (the base side of one run is the aligned side of the next): sides are
the same where their identity is (compute/core/side_identity.py; dtype is not part of it, so one model chains
across dtypes).
Pure functions over numpy and polars; no Streamlit here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import PurePath
from typing import NamedTuple

import numpy as np
import polars as pl

from compute.core import tables, token_types
from compute.core.side_identity import Identity, identity
from dashboard.labels import model_name, printable

MAX_RUNS = 8  # 2^8 patterns at most
SAMPLES = 200  # positions kept per pattern
MAX_TOKEN_ID = 1 << 24  # token types are looked up in an array this long at most
TYPES = (*token_types.TYPES, "unknown")  # "unknown": an id the token table lacks
NONE = "none"
_SEPARATORS = "-_. "


# ------------------------------------------------------------------------------------------------- the chain


def side_name(attrs: dict[str, object]) -> str:
    """A side's short name: its adapter's folder or hub name, else its model's."""
    adapter = str(attrs.get("adapter", "")).rstrip("/\\")
    return printable(PurePath(adapter).name) if adapter else model_name(attrs)


def side_stages(pairs: list[tuple[Identity, Identity]]) -> dict[Identity, int] | None:
    """Each side's stage for runs given as (base side, aligned side): 0 for a side no run aligns, else one more
    than the latest base side it is aligned from. None where the runs make a cycle (a side compared with itself,
    or A vs B and B vs A)."""
    stage = {side: 0 for pair in pairs for side in pair}
    for _ in range(len(stage)):
        changed = False
        for base, aligned in pairs:
            if stage[aligned] < stage[base] + 1:
                stage[aligned] = stage[base] + 1
                changed = True
        if not changed:
            return stage
    return None


class Chain(NamedTuple):
    """The runs in order, and the sides' names stage by stage (empty where the sides make no chain)."""

    order: list[int]
    stages: list[list[str]]


def chain(side_attrs: list[dict[str, dict[str, object]]], names: list[str]) -> Chain:
    """Runs ordered along the chain of their sides: adjacent steps first in stage order, then runs spanning
    several steps; ties and runs without a chain by name. `side_attrs` is each run's sides' attributes."""
    pairs = [(identity(sides["base"]), identity(sides["aligned"])) for sides in side_attrs]
    stage = side_stages(pairs)
    by_name = sorted(range(len(names)), key=lambda i: names[i])
    if stage is None:
        return Chain(by_name, [])
    span = [stage[aligned] - stage[base] for base, aligned in pairs]
    order = sorted(by_name, key=lambda i: (span[i] > 1, stage[pairs[i][0]], stage[pairs[i][1]]))
    named: dict[Identity, str] = {}
    for sides, (base, aligned) in zip(side_attrs, pairs, strict=True):
        named.setdefault(base, side_name(sides["base"]))
        named.setdefault(aligned, side_name(sides["aligned"]))
    steps: list[list[str]] = [[] for _ in range(max(stage.values()) + 1)]
    for side, at in stage.items():
        steps[at].append(named[side])
    return Chain(order, [sorted(set(step)) for step in steps])


def short_names(names: list[str]) -> list[str]:
    """Run names without the start they all share, cut after a separator (gemma-270m-chain-sft-vs-base ->
    sft-vs-base); the names as they are where that leaves one empty or two alike."""
    if len(names) < 2:
        return names
    common = os.path.commonprefix(names)
    cut = max(common.rfind(c) for c in _SEPARATORS) + 1
    short = [name[cut:] for name in names]
    return short if all(short) and len(set(short)) == len(short) else names


# ------------------------------------------------------------------------------------------- counting positions


def pattern_codes(categories: list[np.ndarray], least: int) -> np.ndarray:
    """Per position, bit i set where run i puts it in category `least` or above (2 shifted, 1 marginal)."""
    codes = np.zeros(len(categories[0]) if categories else 0, dtype=np.int64)
    for i, category in enumerate(categories):
        codes |= (category >= least).astype(np.int64) << i
    return codes


def answer_positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For answers of `lengths` one after another: each position's answer (0, 1, ...) and its t in the answer."""
    answer = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.cumsum(lengths) - lengths
    return answer, np.arange(int(np.sum(lengths))) - np.repeat(starts, lengths)


def type_lookup(token_table: pl.DataFrame) -> np.ndarray:
    """Token id -> the index in TYPES of its type (from its decoded text), as an array over ids 0..max id; ids
    past MAX_TOKEN_ID (no vocabulary has them) are left "unknown"."""
    typed = token_types.token_types(token_table).filter(pl.col("id").is_between(0, MAX_TOKEN_ID))
    index = {name: i for i, name in enumerate(TYPES)}
    lookup = np.full(int(typed["id"].max() or 0) + 1, len(TYPES) - 1, dtype=np.int8)
    lookup[typed["id"].to_numpy()] = [index[t] for t in typed["type"].to_list()]
    return lookup


def type_indices(token_ids: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """The index in TYPES of each token id's type ("unknown" for ids the token table lacks)."""
    known = (token_ids >= 0) & (token_ids < len(lookup))
    return np.where(known, lookup[np.where(known, token_ids, 0)], len(TYPES) - 1).astype(np.int64)


class Block(NamedTuple):
    """Consecutive shared answers, position by position."""

    categories: list[np.ndarray]  # per run, each position's shift category
    token_ids: np.ndarray
    lengths: np.ndarray  # each answer's length
    first_answer: int  # the block's first answer, as a row of the shared answers


class StageCounts(NamedTuple):
    """Positions per (pattern, position bin, token type), and the first SAMPLES positions of each pattern."""

    counts: np.ndarray  # (2^runs, bins, len(TYPES)) int64
    edges: np.ndarray  # bin starts (compute.core.tables.bin_edges); bin b holds t in [edges[b], edges[b + 1])
    samples: pl.DataFrame  # pattern, answer (row of the shared answers), t, token_id


def count(
    blocks: Iterable[Block], runs: int, least: int, longest: int, token_table: pl.DataFrame, samples: int = SAMPLES
) -> StageCounts:
    """Count the positions of `blocks` (shared answers of `runs` runs, the longest `longest` tokens) by pattern
    under `least` (see pattern_codes), position bin and token type, one block at a time."""
    edges = tables.bin_edges(max(longest - 1, 0))
    n_patterns, n_bins = 1 << runs, len(edges) - 1
    counts = np.zeros(n_patterns * n_bins * len(TYPES), dtype=np.int64)
    lookup = type_lookup(token_table)
    kept: list[pl.DataFrame] = []
    taken = np.zeros(n_patterns, dtype=np.int64)
    for block in blocks:
        codes = pattern_codes(block.categories, least)
        answer, t = answer_positions(block.lengths)
        bins = np.searchsorted(edges, t, side="right") - 1
        cell = (codes * n_bins + bins) * len(TYPES) + type_indices(block.token_ids, lookup)
        counts += np.bincount(cell, minlength=len(counts))
        if (taken < samples).any():
            rows = first_rows(codes, n_patterns, samples - taken)
            taken += np.bincount(codes[rows], minlength=n_patterns)
            kept.append(
                pl.DataFrame(
                    {
                        "pattern": codes[rows],
                        "answer": answer[rows] + block.first_answer,
                        "t": t[rows],
                        "token_id": block.token_ids[rows].astype(np.int64),
                    }
                )
            )
    schema = {"pattern": pl.Int64, "answer": pl.Int64, "t": pl.Int64, "token_id": pl.Int64}
    found = pl.concat(kept) if kept else pl.DataFrame(schema=schema)
    return StageCounts(
        counts.reshape(n_patterns, n_bins, len(TYPES)), edges, found.sort("pattern", maintain_order=True)
    )


def first_rows(codes: np.ndarray, n_patterns: int, wanted: np.ndarray) -> np.ndarray:
    """The rows of the first wanted[p] positions of each pattern p, in order."""
    present = np.bincount(codes, minlength=n_patterns)
    picks = [np.flatnonzero(codes == p)[: wanted[p]] for p in np.flatnonzero((present > 0) & (wanted > 0))]
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


# ------------------------------------------------------------------------------------------------------ tables


def pattern_name(code: int, names: list[str]) -> str:
    """ "none", "only A", or "A + B + ..." for the runs whose bits are set."""
    shifting = [name for i, name in enumerate(names) if code >> i & 1]
    if not shifting:
        return NONE
    return f"only {shifting[0]}" if len(shifting) == 1 else " + ".join(shifting)


def pattern_order(runs: int) -> list[int]:
    """Every pattern: none first, then by how many runs shift, then in run order."""
    return sorted(range(1 << runs), key=lambda code: (code.bit_count(), [-(code >> i & 1) for i in range(runs)]))


def patterns(counts: StageCounts, names: list[str]) -> pl.DataFrame:
    """Every pattern: pattern (code), shifted_by (its name), pairs (how many shift), positions, share."""
    per = counts.counts.sum(axis=(1, 2))
    total = max(int(per.sum()), 1)
    order = pattern_order(len(names))
    return pl.DataFrame(
        {
            "pattern": order,
            "shifted_by": [pattern_name(code, names) for code in order],
            "pairs": [code.bit_count() for code in order],
            "positions": [int(per[code]) for code in order],
            "share": [per[code] / total for code in order],
        },
        schema_overrides={"pattern": pl.Int64, "pairs": pl.Int64, "positions": pl.Int64, "share": pl.Float64},
    )


def run_shares(counts: StageCounts, names: list[str]) -> pl.DataFrame:
    """Per run (pair): how many of the shared positions it shifts, and what share."""
    per = counts.counts.sum(axis=(1, 2))
    total = max(int(per.sum()), 1)
    shifted = [int(sum(per[code] for code in range(len(per)) if code >> i & 1)) for i in range(len(names))]
    return pl.DataFrame({"pair": names, "shifted": shifted, "share": [s / total for s in shifted]})


def _long(matrix: np.ndarray, names: list[str], key: str, keys: pl.Series) -> pl.DataFrame:
    """A (patterns x keys) count matrix as rows: key, shifted_by, positions, share (of the key's positions); only
    the patterns and keys that hold any position."""
    totals = np.maximum(matrix.sum(axis=0), 1)
    rows = [
        (keys[j], pattern_name(code, names), int(matrix[code, j]), float(matrix[code, j] / totals[j]))
        for code in pattern_order(len(names))
        if matrix[code].sum() > 0
        for j in range(len(keys))
        if matrix[:, j].sum() > 0
    ]
    schema = {key: keys.dtype, "shifted_by": pl.String, "positions": pl.Int64, "share": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def by_position(counts: StageCounts, names: list[str]) -> pl.DataFrame:
    """Per position bin (t_start..t_end) and pattern: positions and their share of the bin's positions."""
    starts = pl.Series("t_start", counts.edges[:-1], dtype=pl.Int64)
    ends = pl.DataFrame({"t_start": starts, "t_end": pl.Series(counts.edges[1:] - 1, dtype=pl.Int64)})
    table = _long(counts.counts.sum(axis=2), names, "t_start", starts)
    return table.join(ends, on="t_start", how="left", maintain_order="left").select(
        "t_start", "t_end", "shifted_by", "positions", "share"
    )


def by_type(counts: StageCounts, names: list[str]) -> pl.DataFrame:
    """Per token type and pattern: positions and their share of the type's positions."""
    return _long(counts.counts.sum(axis=1), names, "type", pl.Series("type", TYPES, dtype=pl.String))
