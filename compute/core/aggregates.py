"""Per-run aggregates: the small tables the dashboard's pages draw, computed once per run and stored with it.

`tds run` writes them into the artifact (the optional group /aggregates); `tds aggregate RUN.h5` writes them
for an older artifact into a side file RUN.aggregates.h5, never touching the artifact. A side file records the
artifact's content hash (and, as a shortcut, its size and modification time) and is used only for that very
content, so a side file shipped beside an artifact serves every clone.

Stored tables say what they hold: the group's attributes `statistics` (the averaged columns whose means the
tables carry) and `category_definitions` (the ids whose rows they carry). A reader uses what is there and
computes only what is missing (`held`, `completion`, `complete_table`): a statistic or category definition
registered after a file was written costs that statistic's means or that definition's rows, not every table.
Every table is computed by the functions in compute/core/tables.py from the stored per-position columns, under
each category definition where it depends on the categories (docs/artifact-format.md lists them).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np
import polars as pl

from compute.core import estimates, example_sums, tables
from compute.core.artifact.errors import ArtifactError
from compute.core.artifact.reader import open_artifact
from compute.core.categories import DEFINITIONS, SHIFTED, categories, known_id
from compute.core.files import write_atomically
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
# Tables that carry the mean of every averaged statistic (mean_<column>), and the column their rows are joined on
# when a statistic's means are added to stored tables that lack them (None: one row per definition, the run's).
WITH_MEANS = {"summary": None, "position_bins": "t_start", "examples": "example"}
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


def base_uncertainty(
    source: Source,
    category_columns: dict[str, np.ndarray] | None = None,
    definitions: tuple[str, ...] | None = None,
) -> pl.DataFrame:
    """The nudging paper's observation, for every γ in GAMMAS and both category definitions: `positions`,
    `uncertain` (positions where the base side's top-1 probability is below γ), `shifted`, and
    `shifted_uncertain` (the shifted positions among the uncertain ones). Counted CHUNK_ROWS positions at a
    time, so only the counts are kept. `category_columns` (definition -> every position's category), where the
    caller has them, spare deriving the categories again; `definitions` (ids) limits the rows to those."""
    definitions = tuple(DEFINITIONS) if definitions is None else definitions
    uncertain = np.zeros(len(GAMMAS), dtype=np.int64)
    shifted = dict.fromkeys(definitions, 0)
    shifted_uncertain = {definition: np.zeros(len(GAMMAS), dtype=np.int64) for definition in definitions}
    for lo in range(0, source.n_positions, CHUNK_ROWS):
        rows = slice(lo, lo + CHUNK_ROWS)
        logprobs = source.read("sides/base/topk_logprobs", rows)
        top1 = np.exp(logprobs[:, 0].astype(np.float64)) if logprobs.shape[1] else np.full(len(logprobs), np.nan)
        uncertain += _below_each_gamma(top1)
        for definition in definitions:
            if category_columns is None:
                category = categories(lambda dataset, rows=rows: source.read(dataset, rows), definition)
            else:
                category = category_columns[definition][rows]
            is_shifted = category == SHIFTED
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
        for definition in definitions
    )


# Tables added after version 1's first set, and how each is computed alone: stored tables may lack them, and a
# reader then computes them from the run's positions.
LATER_TABLES = {
    "base_uncertainty": base_uncertainty,
    "example_sums": example_sums.compute,
    "estimates": lambda source: estimates.table(source, example_sums.compute(source)),
    "position_intervals": lambda source: estimates.position_table(
        source, {d: category_column(source, d) for d in DEFINITIONS}
    ),
}


def _positions(source: Source, averaged: tuple[str, ...] | None = None) -> pl.DataFrame:
    """The per-position columns the tables need, with the averaged statistics named (default: all of
    tables.AVERAGED); an averaged statistic the file lacks is all nulls."""
    n = source.n_positions
    columns = {name: source.read(f"positions/{name}") for name in ("example", "t", "token_id")}
    columns["rank_aligned"] = source.read("sides/aligned/rank")
    frame = pl.DataFrame(columns).with_row_index("row")
    for column in tables.AVERAGED if averaged is None else averaged:
        stat, side = tables.AVERAGED[column]
        dataset = stat.dataset(side)
        values = source.read(dataset) if source.has(dataset) else [None] * n
        frame = frame.with_columns(pl.Series(column, values, dtype=pl.Float32))
    return frame


def compute(source: Source, definitions: tuple[str, ...] | None = None) -> dict[str, pl.DataFrame]:
    """Every aggregate table of a run (see TABLES), with rows for the category definitions named by id
    (default: every registered one)."""
    definitions = tuple(DEFINITIONS) if definitions is None else definitions
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
    for definition in definitions:
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
    result["base_uncertainty"] = base_uncertainty(source, category_columns, definitions)
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
    """Each table as the bytes of a Parquet file, one uint8 dataset per table, and what they hold as the
    group's attributes."""
    for name, table in made.items():
        buffer = io.BytesIO()
        table.write_parquet(buffer)
        group.create_dataset(name, data=np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    group.attrs["version"] = VERSION
    contents = _held_by(made["summary"])
    group.attrs["statistics"] = sorted(contents.statistics)
    group.attrs["category_definitions"] = sorted(contents.definitions)


def write_into(f: h5py.File) -> None:
    """The writer's hook: the aggregates of the run just written into `f`, as its /aggregates group."""
    write_tables(f.create_group(GROUP), compute(OpenFile(f)))


@dataclass(frozen=True)
class Held:
    """What stored tables hold: averaged statistic columns (means) and category-definition ids (rows)."""

    statistics: frozenset[str]
    definitions: frozenset[str]

    def missing(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The registered averaged columns and definition ids these tables lack, in registry order."""
        return (
            tuple(column for column in tables.AVERAGED if column not in self.statistics),
            tuple(definition for definition in DEFINITIONS if definition not in self.definitions),
        )


def _held_by(summary: pl.DataFrame) -> Held:
    statistics = frozenset(column.removeprefix("mean_") for column in summary.columns if column.startswith("mean_"))
    return Held(statistics, frozenset(summary["definition"].to_list()))


def held(group: h5py.Group) -> Held:
    """What a stored group holds: from its attributes, or, for groups written before it recorded them,
    read off its summary table."""
    if "statistics" in group.attrs and "category_definitions" in group.attrs:
        names = [_text(v) for v in group.attrs["category_definitions"]]
        return Held(frozenset(_text(v) for v in group.attrs["statistics"]), frozenset(known_id(n) or n for n in names))
    return _held_by(read_table(group, "summary"))


def held_at(file: Path) -> Held:
    """What the stored group of a file `locate` found holds."""
    with h5py.File(file, "r") as f:
        return held(f[GROUP])


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Completion:
    """What a run's stored tables lack, computed from its positions: every table's rows for the missing
    definitions, and the per-row means of the missing averaged statistics for the tables in WITH_MEANS."""

    rows: dict[str, pl.DataFrame]
    means: dict[str, pl.DataFrame]


def completion(source: Source, contents: Held) -> Completion:
    """The pieces `complete_table` adds to stored tables that hold `contents` (nothing read where nothing is
    missing; a missing statistic the file does not store is a null column, without reading positions)."""
    statistics, definitions = contents.missing()
    rows = compute(source, definitions) if definitions else {}
    return Completion(rows, _means_of(source, statistics) if statistics else {})


def _means_of(source: Source, columns: tuple[str, ...]) -> dict[str, pl.DataFrame]:
    """Per table of WITH_MEANS, its join keys (definition excepted) and the means of `columns`."""
    means = [f"mean_{column}" for column in columns]
    if not any(source.has(stat.dataset(side)) for stat, side in (tables.AVERAGED[c] for c in columns)):
        return {name: pl.DataFrame(schema={m: pl.Float64 for m in means}) for name in WITH_MEANS}
    frame = _positions(source, columns).with_columns(pl.lit(0, dtype=pl.Int8).alias("category"))
    lengths = pl.Series("length", np.diff(source.read("examples/offsets")))
    return {
        "summary": pl.DataFrame([tables.run_summary(frame)]).select(means),
        "position_bins": tables.by_position(frame, lengths).select("t_start", *means),
        "examples": tables.per_example(frame).select("example", *means),
    }


def complete_table(name: str, table: pl.DataFrame, pieces: Completion) -> pl.DataFrame:
    """A stored table with the rows and mean columns it lacks added from `pieces`."""
    if name in pieces.means:
        added, key = pieces.means[name], WITH_MEANS[name]
        if key is None or key not in added.columns:  # one value per run, or null columns
            table = table.with_columns(
                pl.lit(added[c][0] if added.height else None, dtype=pl.Float64).alias(c) for c in added.columns
            )
        else:
            table = table.join(added, on=key, how="left")
    if name in pieces.rows:
        table = pl.concat([table, pieces.rows[name]], how="diagonal_relaxed")
    return table


_UNREADABLE = (OSError, KeyError, ValueError, pl.exceptions.PolarsError)


def usable(group: h5py.Group) -> bool:
    """Whether stored tables are of this version, all there and readable (tables that are not get computed
    afresh; what they lack of the registries is added by `completion`)."""
    if group.attrs.get("version") != VERSION or any(name not in group for name in TABLES if name not in LATER_TABLES):
        return False
    try:
        held(group)
    except _UNREADABLE:
        return False
    return True


def read_table(group: h5py.Group, name: str) -> pl.DataFrame:
    """A stored table; its `definition` column holds ids (older files stored labels: mapped here)."""
    table = pl.read_parquet(io.BytesIO(group[name][()].tobytes()))
    if "definition" in table.columns:
        names = table["definition"].unique().to_list()
        table = table.with_columns(pl.col("definition").replace({n: known_id(n) or n for n in names}))
    return table


def content_hash(path: Path) -> str:
    """The artifact's content, hashed (what a side file is keyed by)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def side_path(path: Path) -> Path:
    """RUN.h5 -> RUN.aggregates.h5, beside it."""
    return path.with_name(path.stem + SIDE_SUFFIX)


def locate(path: Path, size: int, mtime_ns: int) -> tuple[Path, str] | None:
    """Where the run's stored tables are, and what that file is ("side file" or "artifact"): a side file
    written for this very content of the artifact (`tds aggregate` writes one only where the artifact's own
    tables are missing or out of date), else the artifact's own group; None where there are none to use."""
    side = _matching_side_file(path, size, mtime_ns)
    if side is not None:
        return side, "side file"
    with h5py.File(path, "r") as f:
        if GROUP in f and usable(f[GROUP]):
            return path, "artifact"
    return None


def _matching_side_file(path: Path, size: int, mtime_ns: int) -> Path | None:
    side = side_path(path)
    if not side.is_file():
        return None
    try:
        with h5py.File(side, "r") as f:
            group = f.get(GROUP)
            if group is None or not usable(group):
                return None
            if (group.attrs.get("artifact_size"), group.attrs.get("artifact_mtime_ns")) == (size, mtime_ns):
                return side
            recorded = group.attrs.get("artifact_blake2b")
        return side if recorded is not None and _text(recorded) == content_hash(path) else None
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


def up_to_date(path: Path) -> dict[str, pl.DataFrame] | None:
    """The artifact's own stored tables completed with what the registries added since they were written;
    None where it has no usable ones."""
    with h5py.File(path, "r") as f:
        if GROUP not in f or not usable(f[GROUP]):
            return None
        stored = {name: read_table(f[GROUP], name) for name in TABLES if name in f[GROUP]}
        contents = held(f[GROUP])
    if contents.missing() == ((), ()) and len(stored) == len(TABLES):
        return stored
    artifact = open_artifact(path)
    pieces = completion(artifact, contents)
    made = {name: complete_table(name, table, pieces) for name, table in stored.items()}
    for name in TABLES:
        if name not in made:
            made[name] = LATER_TABLES[name](artifact)
    return made


def write_side_file(path: Path | str) -> Path | None:
    """Write RUN.aggregates.h5 for the artifact RUN.h5 atomically (a temp file beside it, then renamed), keyed
    by the artifact's content: its tables from scratch, or its own stored tables brought up to date with the
    registries; None where the artifact's own tables, or a side file written for this content, hold everything
    registered now. The artifact is only read."""
    path = Path(path)
    artifact = open_artifact(path)
    before = path.stat()
    if _complete(path) or _complete_side_file(path, before.st_size, before.st_mtime_ns):
        return None
    own = up_to_date(path)
    made = own if own is not None else compute(artifact)
    key = content_hash(path)
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
        group.attrs["artifact_blake2b"] = key
    target = side_path(path)
    try:
        write_atomically(target, buffer.getbuffer(), replace=True)
    except OSError as err:
        raise ArtifactError(f"{path.parent}: cannot write {target.name}: {err.strerror or err}") from None
    return target


def _complete(path: Path) -> bool:
    """Whether the artifact's own stored tables hold every table and everything registered now."""
    with h5py.File(path, "r") as f:
        group = f.get(GROUP)
        if group is None or not usable(group):
            return False
        return all(name in group for name in TABLES) and held(group).missing() == ((), ())


def _complete_side_file(path: Path, size: int, mtime_ns: int) -> bool:
    """Whether a side file written for this very content holds every table and everything registered now."""
    side = _matching_side_file(path, size, mtime_ns)
    if side is None:
        return False
    with h5py.File(side, "r") as f:
        return all(name in f[GROUP] for name in TABLES) and held(f[GROUP]).missing() == ((), ())
