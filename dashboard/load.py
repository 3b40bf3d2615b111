"""Artifacts -> polars frames, cached across sessions.

The only dashboard module that touches the artifact reader (and so h5py). Every
cached function is keyed on a `RunKey` (path, mtime, size), so a replaced file
is read afresh and an unchanged one is read once for all viewers. Pages draw from
each run's aggregates (small tables stored with the run, or in its side file, or
else computed once from its positions in the background: dashboard/background.py,
so a page waits only a moment and shows the runs that are ready); per-position data is read only for one
example, a few rows, or one pair of runs in bounded chunks. Large values live in a
cache bounded in bytes (dashboard/cache.py).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from compute.core import aggregates as stored_aggregates
from compute.core import statistics
from compute.core.artifact.branching_samples import branching_attrs, has_branching, read_branching
from compute.core.artifact.decoding import decoding as read_decoding
from compute.core.artifact.errors import ArtifactError
from compute.core.artifact.reader import Artifact, open_artifact
from compute.core.artifact.verdicts import Judged, judged
from compute.core.branching import ExampleSamples
from compute.core.categories import ALIGNED_TOP_CHOICE, ANSWER_TOKEN, DEFINITIONS, categories
from compute.core.categories import NAMES as CATEGORIES
from compute.core.errors import one_line
from compute.core.statistics import SIDE_NAMES
from dashboard.background import Computations
from dashboard.cache import cached
from dashboard.labels import run_labels

__all__ = ["ALIGNED_TOP_CHOICE", "ANSWER_TOKEN", "CATEGORIES", "DEFINITIONS", "SIDE_NAMES", "Run", "RunKey"]

ROOT = Path(__file__).resolve().parent.parent

ENV_VAR = "TDS_ARTIFACTS_DIR"
SUFFIXES = (".h5", ".hdf5")
COMPARE_CHUNK_ROWS = 1 << 20  # positions of each run read at once when comparing two runs
WAIT_VAR, DEFAULT_WAIT_S = "TDS_TABLES_WAIT_S", 1.0  # how long a page waits for tables computed in the background

# Per-position columns a page may ask for, by frame column name -> dataset: the answer's own columns and every
# registered per-position statistic that is one number per row (kl, js, rank_base, entropy_aligned, ...).
POSITION_COLUMNS = {
    "example": "positions/example",
    "t": "positions/t",
    "token_id": "positions/token_id",
    "source": "positions/source",  # optional: which side emitted o_t (mixed decoding), 0 aligned, 1 base
    **{column: dataset for column, dataset, stat, _ in statistics.columns() if not stat.topk},
}
CATEGORY = "category"  # the shift category under the definition a page asks for: 0 unshifted, 1 marginal, 2 shifted


class RunKey(NamedTuple):
    """What identifies one version of one artifact file: the cache key of everything below."""

    path: str
    mtime_ns: int
    size: int


class Run(NamedTuple):
    """A checked artifact, the key it was read under, and its label (unique among the runs listed)."""

    key: RunKey
    artifact: Artifact
    label: str

    @property
    def file(self) -> str:
        return Path(self.key.path).name

    @property
    def short_name(self) -> str | None:
        """The run's `short_name` attribute (its display name in charts), None where it has none."""
        value = self.artifact.attrs.get("short_name")
        return str(value) if isinstance(value, str) and value.strip() else None


def artifacts_dir() -> Path:
    """$TDS_ARTIFACTS_DIR, or artifacts/ at the repository root (never the cwd)."""
    configured = os.environ.get(ENV_VAR)
    return Path(configured).expanduser() if configured else ROOT / "artifacts"


def where_from() -> str:
    """ " (from TDS_ARTIFACTS_DIR)" when the artifacts directory was set there, else "" (the default folder)."""
    return f" (from {ENV_VAR})" if os.environ.get(ENV_VAR) else ""


def for_viewers(message: str, directory: Path | None = None) -> str:
    """`message` as every viewer may read it: files named relative to the artifacts folder, never by the
    server's absolute paths (a notice on a shared link names the run, not the server's filesystem)."""
    directory = directory or artifacts_dir()
    for folder in sorted({str(directory), str(directory.resolve())}, key=len, reverse=True):
        message = message.replace(folder + os.sep, "").replace(folder, "the artifacts folder")
    return message


def scan(directory: Path) -> tuple[list[RunKey], list[str]]:
    """The artifact files in `directory`, by name (hidden temp files skipped), and one line per file or
    directory that cannot be read, naming files relative to `directory`. A missing directory is no problem
    here (the app says how to make a run)."""
    try:
        paths = sorted(directory.iterdir()) if directory.exists() else []
    except OSError as err:
        return [], [f"the artifacts folder: cannot list it: {err.strerror or one_line(err)}"]
    keys, problems = [], []
    for path in paths:
        side_file = path.name.endswith(stored_aggregates.SIDE_SUFFIX)  # a run's aggregates, not a run
        if path.name.startswith(".") or path.suffix not in SUFFIXES or side_file:
            continue
        try:
            info = path.stat()
        except OSError as err:
            problems.append(f"{path.name}: cannot read: {err.strerror or one_line(err)}")
            continue
        if stat.S_ISREG(info.st_mode):
            keys.append(RunKey(str(path), info.st_mtime_ns, info.st_size))
        else:
            problems.append(f"{path.name}: not a file")
    return keys, problems


@st.cache_resource(show_spinner=False)
def _opened(key: RunKey) -> Artifact | ArtifactError:
    """The checked artifact, or the error that refuses it (kept as a value: Streamlit caches no exception)."""
    try:
        return open_artifact(key.path)
    except ArtifactError as err:
        return err
    except Exception as err:  # noqa: BLE001  (any file must give a line, not a traceback: e.g. MemoryError)
        return ArtifactError(f"{key.path}: cannot open: {one_line(err)}")


def _open(key: RunKey) -> Artifact:
    """The checked artifact of a run; raises its ArtifactError (one line) for a file that is not one."""
    opened = _opened(key)
    if isinstance(opened, ArtifactError):
        raise opened
    return opened


def open_runs(keys: list[RunKey]) -> tuple[list[Run], list[str]]:
    """The complete format-v1 runs among `keys`, and one line per file that is not."""
    opened, problems = [], []
    for key in keys:
        try:
            opened.append((key, _open(key)))
        except ArtifactError as err:
            problems.append(for_viewers(str(err), Path(key.path).parent))
    labels = run_labels([(Path(key.path).name, artifact.name, artifact.side_attrs) for key, artifact in opened])
    return [Run(key, artifact, label) for (key, artifact), label in zip(opened, labels, strict=True)], problems


def has(run: Run, column: str) -> bool:
    """Whether the run stores this column (optional statistics such as js may be absent)."""
    return run.artifact.has(POSITION_COLUMNS[column])


@cached
def examples(key: RunKey) -> pl.DataFrame:
    """One row per example: example (0-based row), index, id, prompt, response, start, length."""
    artifact = _open(key)
    offsets = artifact.read("examples/offsets")
    return pl.DataFrame(
        {
            "example": np.arange(artifact.n_examples, dtype=np.int32),
            "index": artifact.dataset_indices(),
            "id": artifact.read("examples/id").tolist(),
            "prompt": artifact.read("examples/prompt").tolist(),
            "response": artifact.read("examples/response").tolist(),
            "start": offsets[:-1],
            "length": np.diff(offsets),
        },
        schema_overrides={"id": pl.String, "prompt": pl.String, "response": pl.String},
    )


@cached
def tokens(key: RunKey) -> pl.DataFrame:
    """The token table: id, text (decoded single token)."""
    artifact = _open(key)
    return pl.DataFrame(
        {"id": artifact.read("tokens/id"), "text": artifact.read("tokens/text").tolist()},
        schema_overrides={"id": pl.Int32, "text": pl.String},
    )


@st.cache_resource(show_spinner=False, max_entries=64)  # small: sampled steps, not positions
def branching(key: RunKey) -> tuple[dict[str, object], dict[str, list[ExampleSamples]]] | None:
    """The sampling settings and each side's sampled continuations (BF paper), or None where the run has none."""
    artifact = _open(key)
    if not has_branching(artifact):
        return None
    return branching_attrs(artifact, "aligned"), {side: read_branching(artifact, side) for side in SIDE_NAMES}


def decoding(run: Run) -> tuple[str, dict[str, object]]:
    """How the run's answers were decoded: the rule and its parameters (compute.core.artifact.decoding)."""
    return read_decoding(run.artifact)


@cached
def verdicts(key: RunKey) -> Judged | None:
    """The run's task and how many answers it judged right, or None where the run has no task."""
    artifact = _open(key)
    return judged(artifact)


@cached
def provenance(key: RunKey) -> pl.DataFrame:
    """t, token_id and source (the side that emitted it) of every position of a run decoded by both sides
    together (it must store positions/source; such runs are experiments of a few thousand answers)."""
    artifact = _open(key)
    return pl.DataFrame({name: artifact.read(POSITION_COLUMNS[name]) for name in ("t", "token_id", "source")})


@cached
def _token_text(key: RunKey) -> dict[int, str]:
    table = tokens(key)
    return dict(zip(table["id"].to_list(), table["text"].to_list(), strict=True))


def token_text(run: Run) -> dict[int, str]:
    """Token id -> text, for rendering."""
    return _token_text(run.key)


@cached
def _located(key: RunKey) -> tuple[Path, str] | None:
    return stored_aggregates.locate(Path(key.path), key.size, key.mtime_ns)


class TablesPending(Exception):
    """A run's tables are still being computed from its positions in the background: a page leaves the run out
    (ui.chosen_runs has said so) and shows it once they are ready."""

    def __init__(self, key: RunKey):
        super().__init__(f"{Path(key.path).name}: its tables are still being computed from its positions")
        self.key = key


def from_positions(key: RunKey) -> dict[str, pl.DataFrame]:
    """Every aggregate table of a run, computed from its positions (in the background thread: no Streamlit)."""
    return stored_aggregates.compute(open_artifact(key.path))


@st.cache_resource(show_spinner=False)
def _computations() -> Computations[RunKey, dict[str, pl.DataFrame]]:
    """The server's one background computation of the tables of runs that store none (or store damaged ones)."""
    return Computations(lambda key: from_positions(key), name="tds-tables")


def _in_a_page() -> bool:
    return get_script_run_ctx(suppress_warning=True) is not None


def _computed(key: RunKey) -> dict[str, pl.DataFrame]:
    """Every aggregate table of a run that stores none, computed from its positions once per server. In a page
    (a Streamlit script run), raises TablesPending until they are ready; elsewhere waits for them."""
    future = _computations().ask([key])[0]
    if _in_a_page() and not future.done():
        raise TablesPending(key)
    return future.result()


def needs_computing(key: RunKey) -> bool:
    """Whether a page reads tables of the run computed from its positions: it stores none, or damaged ones."""
    return _located(key) is None or bool(damaged_tables(key))


def wait_s() -> tuple[float, str | None]:
    """How long a page waits for its runs' tables being computed before it shows the others ($TDS_TABLES_WAIT_S,
    default 1 second), and a line saying why the default is used where the setting is unusable."""
    text = os.environ.get(WAIT_VAR, str(DEFAULT_WAIT_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        return DEFAULT_WAIT_S, f"{WAIT_VAR}={text!r} is not a number of seconds; using {DEFAULT_WAIT_S:g}"
    return seconds, None


def _computed_here(key: RunKey) -> bool:
    try:
        return needs_computing(key)
    except Exception:  # noqa: BLE001  (a file that cannot be read is named where a page reads it)
        return False


def still_computing(keys: list[RunKey]) -> list[RunKey]:
    """The runs among `keys` whose tables are computed from their positions and not ready: each is asked for
    (these before any other page's), and this waits at most wait_s() for them all."""
    needed = [key for key in keys if _computed_here(key)]
    return _computations().wait(needed, wait_s()[0]) if needed else []


def computing(keys: list[RunKey]) -> list[RunKey]:
    """The runs among `keys` whose tables are computed from their positions and not ready yet; never waits."""
    return [key for key in keys if _computed_here(key) and not _computations().done(key)]


@cached
def _computed_alone(key: RunKey, name: str) -> pl.DataFrame:
    """A table added since the run's aggregates were stored, computed here from its positions (in chunks)."""
    artifact = _open(key)
    return stored_aggregates.LATER_TABLES[name](artifact)


@cached
def _completion(key: RunKey) -> stored_aggregates.Completion:
    """What the run's stored tables lack of the statistics and category definitions registered now, computed
    here from its positions (nothing is read where nothing is missing)."""
    located = _located(key)
    assert located is not None
    contents = stored_aggregates.held_at(located[0])
    if contents.missing() == ((), ()):
        return stored_aggregates.Completion({}, {})
    artifact = _open(key)
    return stored_aggregates.completion(artifact, contents)


@cached
def _stored(key: RunKey, name: str) -> pl.DataFrame | None:
    """One stored table as the file holds it (read once: the damage check and the pages share it)."""
    located = _located(key)
    assert located is not None
    return stored_aggregates.load_table(located[0], name)


def _table(key: RunKey, name: str) -> pl.DataFrame:
    located = _located(key)
    if located is None or name in damaged_tables(key):
        return _computed(key)[name]
    stored = _stored(key, name)
    if stored is None:
        return _computed_alone(key, name)
    return stored_aggregates.complete_table(name, stored, _completion(key))


# Count columns of the stored tables, and the one whose rows sum to the run's positions (per definition).
COUNT_COLUMNS = ("positions", "answers_reaching", "count", "shifted", "length", "uncertain", "shifted_uncertain")
SUMS_TO_POSITIONS = {
    "position_bins": "positions",
    "token_types": "positions",
    "entropy_by_category": "positions",
    "examples": "positions",
    "token_counts": "count",
    "answers": "length",
}
SHARE_COLUMNS = ("share_unshifted", "share_marginal", "share_shifted", "share_of_positions")


@cached
def damaged_tables(key: RunKey) -> dict[str, str]:
    """The run's stored tables that break an invariant the positions guarantee, each with what it breaks
    (pages then compute that table from the positions): counts that are null or negative, shares outside 0-1,
    counts that do not sum to the run's positions, nulls where none can be, rows missing."""
    located = _located(key)
    if located is None:
        return {}
    artifact = _open(key)
    damaged = {}
    for name in stored_aggregates.TABLES:
        try:
            frame = _stored(key, name)
        except Exception as err:  # noqa: BLE001  (a table that cannot be read is damaged too)
            damaged[name] = f"unreadable: {one_line(err)}"
            continue
        if frame is not None and (problem := table_problem(name, frame, artifact.n_positions, artifact.n_examples)):
            damaged[name] = problem
    return damaged


def table_problem(name: str, frame: pl.DataFrame, n_positions: int, n_examples: int) -> str | None:
    """What makes a stored table disagree with a run of `n_positions` positions and `n_examples` examples."""
    for column in (c for c in (*COUNT_COLUMNS, *SHARE_COLUMNS) if c in frame.columns):
        if frame[column].null_count():
            return f"nulls in {column}"
    for column in (c for c in COUNT_COLUMNS if c in frame.columns):
        if (frame[column] < 0).any():
            return f"negative {column}"
    for column in (c for c in SHARE_COLUMNS if c in frame.columns):
        if not frame[column].is_between(0, 1).all():
            return f"{column} outside 0-1"
    blocks = frame.partition_by("definition") if "definition" in frame.columns else [frame]
    for block in blocks:
        if name == "summary" and block.height != 1:
            return f"{block.height} summary rows"
        column = SUMS_TO_POSITIONS.get(name)
        if column and (total := int(block[column].sum())) != n_positions:
            return f"its {column} sum to {total}, the run has {n_positions} positions"
        if name == "base_uncertainty" and (block["positions"] != n_positions).any():
            return f"positions other than the run's {n_positions}"
    if name == "answers" and frame.height != n_examples:
        return f"{frame.height} answers, the run has {n_examples} examples"
    return None


def aggregates_source(run: Run) -> str:
    """Where the run's aggregates come from: "artifact", "side file" or "positions" (computed here)."""
    located = _located(run.key)
    return "positions" if located is None else located[1]


@cached
def table(key: RunKey, name: str, definition: str | None = None) -> pl.DataFrame:
    """One of the run's aggregate tables (compute.core.aggregates.TABLES); for one that depends on the categories,
    the rows of `definition`, without the definition column. Read once per server, shared by every viewer."""
    frame = _table(key, name)
    if name in stored_aggregates.BY_DEFINITION:
        return frame.filter(pl.col("definition") == (definition or ANSWER_TOKEN)).drop("definition")
    return frame


def window(run: Run, columns: tuple[str, ...], rows: slice) -> pl.DataFrame:
    """A few consecutive positions of a run (the named per-position columns), read from the file."""
    artifact = run.artifact
    rows = slice(max(0, rows.start), min(artifact.n_positions, rows.stop))
    return pl.DataFrame({name: artifact.read(POSITION_COLUMNS[name], rows) for name in columns})


def answer_blocks(starts: np.ndarray, lengths: np.ndarray, max_rows: int) -> list[slice]:
    """Consecutive shared answers grouped so that each group's positions span at most `max_rows` rows in every
    run (a longer answer is a group on its own). `starts` holds one row per run: each answer's first position in
    that run, the answers in the first run's order; `lengths` each answer's length."""
    runs, sizes = starts.tolist(), lengths.tolist()
    blocks, i, n = [], 0, len(sizes)
    while i < n:
        lo, hi = [run[i] for run in runs], [run[i] + sizes[i] for run in runs]
        j = i + 1
        while j < n:
            next_lo = [min(low, run[j]) for low, run in zip(lo, runs, strict=True)]
            next_hi = [max(high, run[j] + sizes[j]) for high, run in zip(hi, runs, strict=True)]
            if any(high - low > max_rows for low, high in zip(next_lo, next_hi, strict=True)):
                break
            lo, hi = next_lo, next_hi
            j += 1
        blocks.append(slice(i, j))
        i = j
    return blocks


def _gather(starts: np.ndarray, lengths: np.ndarray, lo: int) -> np.ndarray:
    """Row numbers, relative to `lo`, of the answers at `starts` with `lengths`, one after another."""
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - lo - before, lengths) + np.arange(int(lengths.sum()))


def _span_categories(artifact: Artifact, lo: int, hi: int, definition: str) -> np.ndarray:
    return categories(lambda dataset: artifact.read(dataset, slice(lo, hi)), definition)


def _answer_starts(key: RunKey) -> pl.DataFrame:
    answers = table(key, "answers")
    return answers.with_columns((pl.col("length").cum_sum() - pl.col("length")).alias("start"))


@cached
def answer_set(key: RunKey) -> frozenset[str]:
    """The run's non-empty answers, one hash per example (of its id and answer token ids)."""
    answers = table(key, "answers")
    return frozenset(answers.filter(pl.col("length") > 0)["hash"].to_list())


@cached
def shared_answers(keys: tuple[RunKey, ...]) -> pl.DataFrame:
    """The non-empty answers every run of `keys` holds (same example id and answer token ids): hash, length and,
    for run i, its example row `example_i` and first position `start_i`; in the first run's order."""
    shared = None
    for i, key in enumerate(keys):
        answers = _answer_starts(key).filter(pl.col("length") > 0).unique("hash", keep="first", maintain_order=True)
        part = answers.select(
            "hash", "length", pl.col("example").alias(f"example_{i}"), pl.col("start").alias(f"start_{i}")
        )
        shared = part if shared is None else shared.join(part.drop("length"), on="hash")
    assert shared is not None, "no runs"
    return shared.sort("start_0")


class SharedBlock(NamedTuple):
    """The positions of some consecutive shared answers, in order: per run their shift categories."""

    answers: slice  # rows of shared_answers(keys)
    categories: list[np.ndarray]  # one int8 array per run
    token_ids: np.ndarray | None  # the answer tokens (read from the first run), when asked for


def shared_blocks(keys: tuple[RunKey, ...], definition: str, token_ids: bool = False) -> Iterator[SharedBlock]:
    """The positions of the answers every run of `keys` holds, block by block: each block reads at most
    COMPARE_CHUNK_ROWS consecutive rows of each run, so two runs of 10M positions never sit in memory."""
    artifacts = [_open(key) for key in keys]
    shared = shared_answers(keys)
    starts = shared.select(f"start_{i}" for i in range(len(keys))).to_numpy().T
    lengths = shared["length"].to_numpy()
    for block in answer_blocks(starts, lengths, COMPARE_CHUNK_ROWS):
        found, tokens = [], None
        for i, artifact in enumerate(artifacts):
            run_starts = starts[i, block]
            lo, hi = int(run_starts.min()), int((run_starts + lengths[block]).max())
            rows = _gather(run_starts, lengths[block], lo)
            found.append(_span_categories(artifact, lo, hi, definition)[rows])
            if token_ids and i == 0:
                tokens = artifact.read("positions/token_id", slice(lo, hi))[rows]
        yield SharedBlock(block, found, tokens)


@cached
def agreement(a: RunKey, b: RunKey, definition: str) -> pl.DataFrame:
    """Position-level agreement of two runs on the answers they share (same example id and token ids):
    positions per (category in A, category in B), counted block by block (shared_blocks)."""
    counts = np.zeros(9, dtype=np.int64)
    for block in shared_blocks((a, b), definition):
        first, second = block.categories
        counts += np.bincount(first.astype(np.int64) * 3 + second, minlength=9)
    return pl.DataFrame(
        {
            "category": np.repeat(np.arange(3, dtype=np.int8), 3),
            "category_b": np.tile(np.arange(3, dtype=np.int8), 3),
            "positions": counts,
        }
    ).filter(pl.col("positions") > 0)


@cached
def example_detail(key: RunKey, e: int, definition: str = ANSWER_TOKEN) -> dict[str, pl.DataFrame]:
    """Example `e` position by position: "positions" (t, token_id, every stored per-row statistic, category
    under `definition`) and per side "topk_<side>" (t, k, id, logprob)."""
    artifact = _open(key)
    rows = artifact.example_rows(e)
    n = rows.stop - rows.start
    detail = {
        "t": np.arange(n, dtype=np.int32),
        **{
            name: artifact.read(dataset, rows) if artifact.has(dataset) else np.full(n, np.nan, dtype=np.float32)
            for name, dataset in POSITION_COLUMNS.items()
            if name not in ("example", "t")
        },
    }
    detail[CATEGORY] = categories(lambda dataset: artifact.read(dataset, rows), definition)
    out = {"positions": pl.DataFrame(detail)}
    for side in SIDE_NAMES:
        ids = artifact.read(f"sides/{side}/topk_ids", rows)
        logprobs = artifact.read(f"sides/{side}/topk_logprobs", rows)
        k = ids.shape[1]
        out[f"topk_{side}"] = pl.DataFrame(
            {
                "t": np.repeat(np.arange(n, dtype=np.int32), k),
                "k": np.tile(np.arange(k, dtype=np.int32), n),
                "id": ids.reshape(-1),
                "logprob": logprobs.reshape(-1).astype(np.float32),
            }
        )
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def context_text(key: RunKey, side: str, e: int) -> str | None:
    """The side's rendered context for example e as the run stored it (bytes that are not UTF-8, such as a
    character split by the offsets, show as �); None where it stored none."""
    artifact = _open(key)
    try:
        return artifact.context_text(side, e) or None  # None where the file stores none (an optional addition)
    except UnicodeDecodeError as err:
        return err.object.decode("utf-8", errors="replace") or None


@st.cache_data(show_spinner=False, max_entries=64)
def context_ids(key: RunKey, side: str, e: int) -> list[int]:
    """The exact context ids the side scored example e with."""
    artifact = _open(key)
    return artifact.context_ids(side, e).tolist()
