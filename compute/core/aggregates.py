"""Per-run aggregates: the small tables the dashboard's pages draw, computed once per run and stored with it.

`compute run` writes them into the artifact (the optional group /aggregates); `python -m compute aggregate
RUN.h5` writes them for an older artifact into a side file RUN.aggregates.h5, never touching the artifact.
A side file records the artifact's size and modification time and is used only while both still match.
Every table is computed by the functions in compute/tables.py from the stored per-position columns, under
both category definitions where it depends on the categories (docs/artifact-format.md lists them).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np
import polars as pl

from compute.core import estimates, example_sums, tables
from compute.core.artifact import CATEGORY_DEFINITIONS, ArtifactError, categories, open_artifact
from compute.core.token_types import token_types

GROUP = "aggregates"
VERSION = 1
SIDE_SUFFIX = ".aggregates.h5"
CHUNK_ROWS = 1 << 20  # positions per read when deriving categories (the AlignTDS rule reads two top-k lists)
# Tables with one block of rows per category definition (column `definition`), and those without.
BY_DEFINITION = (
    "summary",
    "position_bins",
    "token_types",
    "entropy_by_category",
    "examples",
    "token_counts",
    "base_uncertainty",
    "example_sums",  # per example: the sums every headline number needs (compute/core/example_sums.py)
    "estimates",  # every headline number with its interval (compute/core/estimates.py)
    "position_intervals",  # per bin of t: shares and means with intervals (compute/core/estimates.py)
)
TABLES = (*BY_DEFINITION, "answers")
# The thresholds γ of the nudging paper's observation (base_uncertainty): 0.05, 0.10, ..., 0.95.
GAMMAS = np.round(np.arange(1, 20) * 0.05, 2)


class Source(Protocol):
    """What the tables are computed from: a checked Artifact, or the writer's open in-memory file."""

    n_positions: int

    def has(self, dataset: str) -> bool: ...

    def read(self, dataset: str, rows: slice | None = None) -> np.ndarray: ...


class OpenFile:
    """An open h5py file as a Source (the writer's file, before it is complete)."""

    def __init__(self, f: h5py.File):
        self.f = f
        self.n_positions = f["positions/t"].shape[0]

    def has(self, dataset: str) -> bool:
        return dataset in self.f

    def read(self, dataset: str, rows: slice | None = None) -> np.ndarray:
        ds = self.f[dataset]
        if h5py.check_string_dtype(ds.dtype) is not None:
            ds = ds.asstr()
        return ds[()] if rows is None else ds[rows]


def category_column(source: Source, definition: str) -> np.ndarray:
    """The shift category of every position under `definition`, derived CHUNK_ROWS positions at a time."""
    parts = [
        categories(lambda dataset, lo=lo: source.read(dataset, slice(lo, lo + CHUNK_ROWS)), definition)
        for lo in range(0, source.n_positions, CHUNK_ROWS)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)


def _below_each_gamma(top1: np.ndarray) -> np.ndarray:
    """How many of the probabilities are below each γ in GAMMAS (a NaN is below none)."""
    first_above = np.searchsorted(GAMMAS, top1, side="right")  # the index of the first γ above each probability
    return np.cumsum(np.bincount(first_above, minlength=len(GAMMAS) + 1))[: len(GAMMAS)]


def base_uncertainty(source: Source, category_columns: dict[str, np.ndarray] | None = None) -> pl.DataFrame:
    """The nudging paper's observation, for every γ in GAMMAS and both category definitions: `positions`,
    `uncertain` (positions where the base side's top-1 probability is below γ), `shifted`, and
    `shifted_uncertain` (the shifted positions among the uncertain ones). Counted CHUNK_ROWS positions at a
    time, so only the counts are kept. `category_columns` (definition -> every position's category), where the
    caller has them, spare deriving the categories again."""
    uncertain = np.zeros(len(GAMMAS), dtype=np.int64)
    shifted = dict.fromkeys(CATEGORY_DEFINITIONS, 0)
    shifted_uncertain = {definition: np.zeros(len(GAMMAS), dtype=np.int64) for definition in CATEGORY_DEFINITIONS}
    for lo in range(0, source.n_positions, CHUNK_ROWS):
        rows = slice(lo, lo + CHUNK_ROWS)
        logprobs = source.read("sides/base/topk_logprobs", rows)
        top1 = np.exp(logprobs[:, 0].astype(np.float64)) if logprobs.shape[1] else np.full(len(logprobs), np.nan)
        uncertain += _below_each_gamma(top1)
        for definition in CATEGORY_DEFINITIONS:
            if category_columns is None:
                category = categories(lambda dataset, rows=rows: source.read(dataset, rows), definition)
            else:
                category = category_columns[definition][rows]
            is_shifted = category == tables.SHIFTED
            shifted[definition] += int(is_shifted.sum())
            shifted_uncertain[definition] += _below_each_gamma(top1[is_shifted])
    return pl.concat(
        pl.DataFrame(
            {
                "definition": definition,
                "gamma": GAMMAS,
                "positions": np.full(len(GAMMAS), source.n_positions, dtype=np.int64),
                "uncertain": uncertain,
                "shifted": np.full(len(GAMMAS), shifted[definition], dtype=np.int64),
                "shifted_uncertain": shifted_uncertain[definition],
            }
        )
        for definition in CATEGORY_DEFINITIONS
    )


# Tables added after version 1's first set, and how each is computed alone: stored tables may lack them, and a
# reader then computes them from the run's positions.
LATER_TABLES = {
    "base_uncertainty": base_uncertainty,
    "example_sums": example_sums.compute,
    "estimates": lambda source: estimates.table(source, example_sums.compute(source)),
    "position_intervals": lambda source: estimates.position_table(
        source, {d: category_column(source, d) for d in CATEGORY_DEFINITIONS}
    ),
}


def _positions(source: Source) -> pl.DataFrame:
    """The per-position columns the tables need; an averaged statistic the file lacks is all nulls."""
    n = source.n_positions
    columns = {name: source.read(f"positions/{name}") for name in ("example", "t", "token_id")}
    columns["rank_aligned"] = source.read("sides/aligned/rank")
    frame = pl.DataFrame(columns).with_row_index("row")
    for column, (stat, side) in tables.AVERAGED.items():
        dataset = stat.dataset(side)
        values = source.read(dataset) if source.has(dataset) else [None] * n
        frame = frame.with_columns(pl.Series(column, values, dtype=pl.Float32))
    return frame


def compute(source: Source) -> dict[str, pl.DataFrame]:
    """Every aggregate table of a run (see TABLES)."""
    offsets = source.read("examples/offsets")
    lengths = pl.Series("length", np.diff(offsets))
    ids = source.read("examples/id").tolist()
    token_table = pl.DataFrame(
        {"id": source.read("tokens/id"), "text": source.read("tokens/text").tolist()},
        schema_overrides={"id": pl.Int32, "text": pl.String},
    )
    types = token_types(token_table)
    frame = _positions(source)
    per_definition: dict[str, list[pl.DataFrame]] = {}
    category_columns = {}
    for definition in CATEGORY_DEFINITIONS:
        category_columns[definition] = category_column(source, definition)
        framed = frame.with_columns(pl.Series("category", category_columns[definition]))
        summary = tables.run_summary(framed)
        summary["answer_is_aligned_top"] = framed["rank_aligned"].eq(0).mean() if framed.height else None
        typed = tables.with_types(framed, types)
        made = {
            "summary": pl.DataFrame([summary]),
            "position_bins": tables.by_position(framed, lengths),
            "token_types": tables.type_shares(typed),
            "entropy_by_category": tables.entropy_by_category(framed),
            "examples": tables.per_example(framed),
            "token_counts": tables.token_counts(typed),
        }
        for name, table in made.items():
            per_definition.setdefault(name, []).append(table.select(pl.lit(definition).alias("definition"), pl.all()))
    result = {name: pl.concat(parts, how="diagonal_relaxed") for name, parts in per_definition.items()}
    result["base_uncertainty"] = base_uncertainty(source, category_columns)
    result["example_sums"] = example_sums.compute(source, category_columns, types)
    result["estimates"] = estimates.table(source, result["example_sums"])
    result["position_intervals"] = estimates.position_table(source, category_columns)
    result["answers"] = pl.DataFrame(
        {
            "example": np.arange(len(ids), dtype=np.int32),
            "length": lengths,
            "hash": tables.answer_hashes(ids, offsets, source.read("positions/token_id")),
        },
        schema_overrides={"hash": pl.String},
    )
    return result


def write_tables(group: h5py.Group, made: dict[str, pl.DataFrame]) -> None:
    """Each table as the bytes of a Parquet file, one uint8 dataset per table."""
    for name, table in made.items():
        buffer = io.BytesIO()
        table.write_parquet(buffer)
        group.create_dataset(name, data=np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    group.attrs["version"] = VERSION


def write_into(f: h5py.File) -> None:
    """The writer's hook: the aggregates of the run just written into `f`, as its /aggregates group."""
    write_tables(f.create_group(GROUP), compute(OpenFile(f)))


_UNREADABLE = (OSError, KeyError, ValueError, pl.exceptions.PolarsError)


def usable(group: h5py.Group) -> bool:
    """Whether stored tables are of this version, complete, readable, and hold the mean of every statistic
    registered now (tables that are not get computed afresh)."""
    if group.attrs.get("version") != VERSION or any(name not in group for name in TABLES if name not in LATER_TABLES):
        return False
    try:
        summary = read_table(group, "summary")
    except _UNREADABLE:
        return False
    return all(f"mean_{column}" in summary.columns for column in tables.AVERAGED)


def read_table(group: h5py.Group, name: str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(group[name][()].tobytes()))


def side_path(path: Path) -> Path:
    """RUN.h5 -> RUN.aggregates.h5, beside it."""
    return path.with_name(path.stem + SIDE_SUFFIX)


def locate(path: Path, size: int, mtime_ns: int) -> tuple[Path, str] | None:
    """Where the run's stored tables are, and what that file is ("artifact" or "side file"): the artifact's own
    group, else a side file written for this very version of the artifact (same size and modification time);
    None where there are none to use."""
    with h5py.File(path, "r") as f:
        if GROUP in f:
            return (path, "artifact") if usable(f[GROUP]) else None
    side = side_path(path)
    if not side.is_file():
        return None
    try:
        with h5py.File(side, "r") as f:
            group = f.get(GROUP)
            fingerprint = (group.attrs.get("artifact_size"), group.attrs.get("artifact_mtime_ns")) if group else None
            return (side, "side file") if fingerprint == (size, mtime_ns) and usable(group) else None
    except _UNREADABLE:  # a damaged side file is no side file
        return None


def load_table(file: Path, name: str) -> pl.DataFrame | None:
    """One stored table from the file `locate` found; None for one of LATER_TABLES stored before it existed."""
    with h5py.File(file, "r") as f:
        if name in LATER_TABLES and name not in f[GROUP]:
            return None
        return read_table(f[GROUP], name)


def stored(path: Path, size: int, mtime_ns: int) -> dict[str, pl.DataFrame] | None:
    """Every table stored for the run (see `locate`), or None where there are none to use."""
    located = locate(path, size, mtime_ns)
    if located is None:
        return None
    found = {name: load_table(located[0], name) for name in TABLES}
    return {name: table for name, table in found.items() if table is not None}


def write_side_file(path: Path | str) -> Path | None:
    """Write RUN.aggregates.h5 for the artifact RUN.h5 atomically (a temp file beside it, then renamed);
    None where the artifact holds its aggregates already. The artifact is only read."""
    path = Path(path)
    artifact = open_artifact(path)
    if artifact.has(f"{GROUP}/summary"):
        return None
    before = path.stat()
    made = compute(artifact)
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise ArtifactError(f"{path}: changed while its aggregates were computed; run the command again")
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        group = f.create_group(GROUP)
        write_tables(group, made)
        group.attrs["artifact"] = path.name
        group.attrs["artifact_size"] = before.st_size
        group.attrs["artifact_mtime_ns"] = before.st_mtime_ns
    target = side_path(path)
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        with open(fd, "wb") as out:
            out.write(buffer.getbuffer())
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, target)
        tmp = None
    except OSError as err:
        raise ArtifactError(f"{path.parent}: cannot write {target.name}: {err.strerror or err}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return target


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
