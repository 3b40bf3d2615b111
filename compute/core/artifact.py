"""Write and read the TDS artifact, format version 1 (docs/artifact-format.md).

This module is the contract between compute/ and dashboard/: it imports only
h5py and numpy, so the dashboard can use the same checked reader without
pulling in torch. Every read goes through `open_artifact`, which refuses a file
that is not a complete format-v1 artifact with one `ArtifactError` line.
"""

from __future__ import annotations

import errno
import io
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from compute.core import rules, statistics
from compute.core.branching import ExampleSamples
from compute.core.categories import DEFINITIONS
from compute.core.categories import NAMES as CATEGORIES
from compute.core.errors import UserError, one_line
from compute.core.files import write_atomically
from compute.core.statistics import SIDE_NAMES

FORMAT = "tds-artifact"
FORMAT_VERSION = 1
NUL_STANDIN = "\u2400"  # HDF5 strings cannot hold NUL


_STR = h5py.string_dtype("utf-8")
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


class ArtifactError(UserError):
    """An artifact that cannot be read or written; the message is one line for the user."""


@dataclass
class SideContext:
    """One side's context for one example: the exact ids before the answer, and the rendered text."""

    ids: np.ndarray  # (C,) int32
    text: str = ""


@dataclass
class ExampleScores:
    """Everything an artifact keeps about one example."""

    index: int  # position of the example in the dataset
    id: str
    prompt: str
    response: str
    token_ids: np.ndarray  # (T,) int32, the answer o
    contexts: dict[str, SideContext]
    stats: dict[str, np.ndarray]  # dataset path ("sides/base/rank") -> (T,) or (T, k): core/statistics.py
    branching: dict[str, ExampleSamples] | None = None  # side -> sampled continuations (optional /branching)
    reference: str | None = None  # the expected answer of a verifiable task (optional /examples/reference)
    correct: int = -1  # the task's verdict: 1 right, 0 wrong, -1 not judged (optional /examples/correct)
    source: np.ndarray | None = None  # (T,) int8: which side emitted each o_t (optional /positions/source)
    decoding_logprobs: np.ndarray | None = None  # (T, 3) float32: the decoder's log P of o_t (aligned, base, decoded)


@dataclass
class RunMeta:
    """The run-level facts written as attributes."""

    name: str
    top_k: int
    side_attrs: dict[str, dict[str, str]]  # side -> model, template, dtype, ...
    attrs: dict[str, str] = field(default_factory=dict)  # extra root attributes
    branching: dict[str, int | float] | None = None  # /branching/<side> attrs: samples, temperature, top_p, ...


def _clean(text: str) -> str:
    return text.replace("\x00", NUL_STANDIN)


def _strings(values: list[str]) -> np.ndarray:
    return np.array([_clean(v) for v in values], dtype=object)


def _offsets(lengths: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)


def _concat(arrays: list[np.ndarray], dtype, width: int | None = None) -> np.ndarray:
    if arrays:
        return np.concatenate(arrays).astype(dtype, copy=False)
    return np.zeros((0,) if width is None else (0, width), dtype=dtype)


def _put(group: h5py.Group, name: str, data: np.ndarray) -> None:
    kwargs = dict(_COMPRESSION) if len(data) > 0 else {}
    if data.dtype == object:
        group.create_dataset(name, data=data, dtype=_STR, **kwargs)
    else:
        group.create_dataset(name, data=data, **kwargs)


def write_artifact(
    path: Path,
    meta: RunMeta,
    examples: list[ExampleScores],
    token_text: dict[int, str],
    overwrite: bool = False,
    extra: Callable[[h5py.File], None] | None = None,
) -> None:
    """Write one run atomically: a temp file beside `path`, `complete` last, then renamed.

    `extra(file)`, if given, adds to the file after the body and before `complete` (the run's aggregates).

    Without `overwrite` an existing file at `path` is never replaced, even if it
    appeared while the run was going on. A failed write (a full disk, a file-size
    limit, a folder gone or read-only) leaves no temp file and raises one ArtifactError line.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ArtifactError(f"{path}: an artifact of that name exists (use --overwrite to replace it)")
    if path.is_dir():
        raise ArtifactError(f"{path}: is a folder, not an artifact; move it away to write the run")
    try:
        write_atomically(path, _file_image(meta, examples, token_text, extra), replace=overwrite)
    except FileExistsError as err:
        raise ArtifactError(f"{path}: an artifact of that name exists (use --overwrite to replace it)") from err
    except OSError as err:
        raise _write_error(path, err) from None


def _file_image(
    meta: RunMeta,
    examples: list[ExampleScores],
    token_text: dict[int, str],
    extra: Callable[[h5py.File], None] | None = None,
) -> memoryview:
    """The whole HDF5 file, built in memory: HDF5 cannot recover from a failed write (it can even crash),
    so the disk sees only plain writes, whose errors are ordinary OSErrors."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        _write_body(f, meta, examples, token_text)
        if extra is not None:
            extra(f)
        f.attrs["complete"] = True
    return buffer.getbuffer()


_NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")  # write_artifact's: mkstemp's 8 random characters


def left_temp_files(folder: Path, target: str | None = None) -> list[Path]:
    """The temp files killed writes left in `folder`: those of the file named `target` only (compared as a
    string, never as a pattern), or of any target when None."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _TEMP_NAME.fullmatch(path.name)
        if match and (target is None or match["target"] == target) and path.is_file():
            found.append(path)
    return sorted(found)


def _write_error(path: Path, err: OSError) -> ArtifactError:
    """One line for a failed write; h5py reports the system error only inside its message."""
    text = one_line(err)
    if err.errno in _NO_SPACE or any(os.strerror(code) in text for code in _NO_SPACE):
        return ArtifactError(f"{path.parent}: no space left to write {path.name} (disk full or file-size limit)")
    reason = err.strerror or text
    return ArtifactError(f"{path.parent}: cannot write {path.name}: {reason}")


def _write_body(f: h5py.File, meta: RunMeta, examples: list[ExampleScores], token_text: dict[int, str]) -> None:
    k = meta.top_k
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["name"] = meta.name
    f.attrs["top_k"] = k
    f.attrs["created_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    for key, value in meta.attrs.items():
        f.attrs[key] = value

    lengths = [len(e.token_ids) for e in examples]
    ex = f.create_group("examples")
    _put(ex, "id", _strings([e.id for e in examples]))
    _put(ex, "prompt", _strings([e.prompt for e in examples]))
    _put(ex, "response", _strings([e.response for e in examples]))
    _put(ex, "offsets", _offsets(lengths))
    _put(ex, "index", np.array([e.index for e in examples], dtype=np.int64))
    if "task" in meta.attrs:
        _put(ex, "reference", _strings([e.reference or "" for e in examples]))
        _put(ex, "correct", np.array([e.correct for e in examples], dtype=np.int8))

    pos = f.create_group("positions")
    _put(pos, "example", np.repeat(np.arange(len(examples), dtype=np.int32), lengths))
    _put(pos, "t", _concat([np.arange(n, dtype=np.int32) for n in lengths], np.int32))
    _put(pos, "token_id", _concat([e.token_ids for e in examples], np.int32))
    if any(e.source is not None for e in examples):  # answers decoded under a [decoding] rule
        if any(e.source is None or len(e.source) != len(e.token_ids) for e in examples):
            raise ArtifactError(f"{meta.name}: an example lacks the source of its tokens")
        _put(pos, "source", _concat([e.source for e in examples], np.int8))
    if any(e.decoding_logprobs is not None for e in examples):  # answers decoded by both sides stepping together
        if any(e.decoding_logprobs is None or len(e.decoding_logprobs) != len(e.token_ids) for e in examples):
            raise ArtifactError(f"{meta.name}: an example lacks the decoder's log-probabilities of its tokens")
        logprobs = [e.decoding_logprobs.reshape(-1, 3) for e in examples]
        _put(pos, "decoding_logprobs", np.concatenate(logprobs).astype(np.float32))

    sides = f.create_group("sides")
    for side in SIDE_NAMES:
        g = sides.create_group(side)
        for key, value in meta.side_attrs[side].items():
            g.attrs[key] = value
        contexts = [e.contexts[side] for e in examples]
        _put(g, "context_ids", _concat([c.ids for c in contexts], np.int32))
        _put(g, "context_offsets", _offsets([len(c.ids) for c in contexts]))
        texts = [c.text.encode("utf-8") for c in contexts]
        _put(g, "context_text", np.frombuffer(b"".join(texts), dtype=np.uint8))
        _put(g, "context_text_offsets", _offsets([len(t) for t in texts]))

    for stat in statistics.STATISTICS:
        for dataset in stat.datasets():
            if not all(dataset in e.stats for e in examples):
                if stat.required:
                    raise ArtifactError(f"{meta.name}: no values for {dataset}")
                continue
            width = k if stat.topk else None
            _put(f, dataset, _concat([e.stats[dataset] for e in examples], stat.dtype, width))

    if meta.branching is not None:
        _write_branching(f, meta, examples)

    ids = sorted(token_text)
    tok = f.create_group("tokens")
    _put(tok, "id", np.array(ids, dtype=np.int32))
    _put(tok, "text", _strings([token_text[i] for i in ids]))


def _write_branching(f: h5py.File, meta: RunMeta, examples: list[ExampleScores]) -> None:
    """/branching/<side>: every example's samples, concatenated (format section "Branching factor")."""
    n = int(meta.branching["samples"])
    for side in SIDE_NAMES:
        samples = [e.branching[side] if e.branching else None for e in examples]
        if any(s is None or s.n != n for s in samples):
            raise ArtifactError(f"{meta.name}: an example lacks its {n} branching samples of side {side}")
        g = f.create_group(f"branching/{side}")
        for key, value in meta.branching.items():
            g.attrs[key] = value
        lengths = [length for s in samples for length in np.diff(s.offsets)]
        _put(g, "sample_offsets", _offsets(lengths))
        _put(g, "entropy", _concat([s.entropy for s in samples], np.float32))
        _put(g, "token_id", _concat([s.token_id for s in samples], np.int32))
        _put(g, "logprob", _concat([s.logprob for s in samples], np.float32))


# ---------------------------------------------------------------- reading

_EXAMPLE_ROWS = ("examples/id", "examples/prompt", "examples/response")
_POSITION_ROWS = ("positions/example", "positions/t", "positions/token_id")
_OPTIONAL_EXAMPLE_ROWS = ("examples/index", "examples/reference", "examples/correct")
_SIDE_ATTRS = ("model", "template", "dtype")


@dataclass(frozen=True)
class Artifact:
    """A checked, complete format-v1 artifact; columns are read on demand."""

    path: Path
    name: str
    top_k: int
    n_examples: int
    n_positions: int
    attrs: dict[str, object]
    side_attrs: dict[str, dict[str, object]]
    datasets: frozenset[str]  # every dataset path the file holds

    def has(self, dataset: str) -> bool:
        return dataset in self.datasets

    def read(self, dataset: str, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """One dataset (e.g. "sides/base/rank"), all rows or the given ones; strings as str."""
        try:
            with h5py.File(self.path, "r") as f:
                ds = f[dataset]
                if h5py.check_string_dtype(ds.dtype) is not None:
                    ds = ds.asstr()
                return ds[()] if rows is None else ds[rows]
        except (OSError, KeyError, ValueError) as err:
            raise ArtifactError(f"{self.path}: cannot read {dataset}: {one_line(err)}") from None

    def example_rows(self, e: int) -> slice:
        offsets = self.read("examples/offsets", slice(e, e + 2))
        return slice(int(offsets[0]), int(offsets[1]))

    def context_ids(self, side: str, e: int) -> np.ndarray:
        bounds = self.read(f"sides/{side}/context_offsets", slice(e, e + 2))
        return self.read(f"sides/{side}/context_ids", slice(int(bounds[0]), int(bounds[1])))

    def context_text(self, side: str, e: int) -> str | None:
        """The rendered context, or None where the file stores none (an optional addition)."""
        if not self.has(f"sides/{side}/context_text"):
            return None
        bounds = self.read(f"sides/{side}/context_text_offsets", slice(e, e + 2))
        return self.read(f"sides/{side}/context_text", slice(int(bounds[0]), int(bounds[1]))).tobytes().decode()

    def dataset_indices(self) -> np.ndarray:
        """Each example's place in the dataset: examples/index, or 0..E-1 where the file lacks it."""
        if self.has("examples/index"):
            return self.read("examples/index")
        return np.arange(self.n_examples, dtype=np.int64)

    def statistics(self) -> list[tuple[str, object, str | None]]:
        """(dataset, statistic, side) for every registered statistic this file holds."""
        return [
            (stat.dataset(side), stat, side)
            for stat in statistics.STATISTICS
            for side in stat.sides()
            if self.has(stat.dataset(side))
        ]

    def token_texts(self) -> dict[int, str]:
        return dict(zip(self.read("tokens/id").tolist(), self.read("tokens/text").tolist(), strict=True))


def _text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def open_artifact(path: Path | str) -> Artifact:
    """Open and check an artifact; raise ArtifactError naming the file and the fault."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file")
    try:
        with h5py.File(path, "r") as f:
            return _check(path, f)
    except ArtifactError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ArtifactError(f"{path}: not a readable HDF5 artifact (truncated or corrupt?): {one_line(err)}") from None


def _check(path: Path, f: h5py.File) -> Artifact:
    def fail(what: str) -> ArtifactError:
        return ArtifactError(f"{path}: {what}")

    attrs = {key: _text(f.attrs[key]) for key in f.attrs}
    if attrs.get("format") != FORMAT:
        raise fail(f"not a TDS artifact (attribute format is {attrs.get('format')!r}, expected {FORMAT!r})")
    version = attrs.get("format_version")
    if not isinstance(version, (int, np.integer)):
        raise fail("attribute format_version is missing or not an integer")
    if version > FORMAT_VERSION:
        raise fail(f"format_version {version} is newer than this reader ({FORMAT_VERSION}); update the project")
    if version < 1:
        raise fail(f"format_version {version} is not a known version")
    if not bool(attrs.get("complete", False)):
        raise fail("incomplete artifact (no 'complete' attribute: the run did not finish writing it)")
    for key in ("name", "top_k", "created_utc"):
        if key not in attrs:
            raise fail(f"attribute {key} is missing")
    k = int(attrs["top_k"])
    _check_stored(f, fail)  # before any dataset is read whole

    def shape(name: str) -> tuple[int, ...]:
        if name not in f or not isinstance(f[name], h5py.Dataset):
            raise fail(f"dataset /{name} is missing")
        return f[name].shape

    offsets_shape = shape("examples/offsets")
    if len(offsets_shape) != 1 or offsets_shape[0] < 1:
        raise fail("/examples/offsets must be a 1-D array of E+1 entries")
    n_examples = offsets_shape[0] - 1
    offsets = f["examples/offsets"][()]
    n_positions = int(offsets[-1])
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise fail("/examples/offsets must start at 0 and never decrease")
    for name in _EXAMPLE_ROWS:
        if shape(name) != (n_examples,):
            raise fail(f"/{name} has shape {shape(name)}, expected ({n_examples},)")
    for name in _POSITION_ROWS:
        if shape(name) != (n_positions,):
            raise fail(f"/{name} has shape {shape(name)}, expected ({n_positions},)")
    for name in _OPTIONAL_EXAMPLE_ROWS:
        if name in f and shape(name) != (n_examples,):
            raise fail(f"/{name} has shape {shape(name)}, expected ({n_examples},)")
    side_attrs = {}
    for side in SIDE_NAMES:
        group = f"sides/{side}"
        if group not in f:
            raise fail(f"group /{group} is missing")
        s_attrs = {key: _text(f[group].attrs[key]) for key in f[group].attrs}
        for key in _SIDE_ATTRS:
            if key not in s_attrs:
                raise fail(f"attribute {key} of /{group} is missing")
        side_attrs[side] = s_attrs
        if shape(f"{group}/context_offsets") != (n_examples + 1,):
            raise fail(f"/{group}/context_offsets must have E+1 = {n_examples + 1} entries")
        context_end = int(f[f"{group}/context_offsets"][-1])
        if shape(f"{group}/context_ids") != (context_end,):
            raise fail(f"/{group}/context_ids has {shape(f'{group}/context_ids')[0]} ids, offsets say {context_end}")
        if (f"{group}/context_text" in f) != (f"{group}/context_text_offsets" in f):
            raise fail(f"/{group} has one of context_text and context_text_offsets without the other")
        if f"{group}/context_text_offsets" in f and shape(f"{group}/context_text_offsets") != (n_examples + 1,):
            raise fail(f"/{group}/context_text_offsets must have E+1 = {n_examples + 1} entries")
    for stat in statistics.STATISTICS:
        expected = (n_positions, k) if stat.topk else (n_positions,)
        for dataset in stat.datasets():
            if dataset not in f and not stat.required:
                continue
            if shape(dataset) != expected:
                raise fail(f"/{dataset} has shape {shape(dataset)}, expected {expected}")
    if shape("tokens/id") != shape("tokens/text"):
        raise fail("/tokens/id and /tokens/text differ in length")
    _check_contents(f, offsets, fail)
    _check_branching(f, n_examples, fail)
    return Artifact(
        path=path,
        name=str(attrs["name"]),
        top_k=k,
        n_examples=n_examples,
        n_positions=n_positions,
        attrs=attrs,
        side_attrs=side_attrs,
        datasets=frozenset(_dataset_paths(f)),
    )


def _dataset_paths(f: h5py.File) -> list[str]:
    paths: list[str] = []
    f.visititems(lambda name, obj: paths.append(name) if isinstance(obj, h5py.Dataset) else None)
    return paths


# What each dataset must hold beyond its shape; the statistics' kinds come from the registry.
_KIND_OF = {
    "examples/id": "strings",
    "examples/prompt": "strings",
    "examples/response": "strings",
    "examples/offsets": "integers",
    "examples/index": "integers",
    "examples/reference": "strings",
    "examples/correct": "integers",
    "positions/example": "integers",
    "positions/t": "integers",
    "positions/token_id": "integers",
    "positions/source": "integers",
    "positions/decoding_logprobs": "numbers",
    "tokens/id": "integers",
    "tokens/text": "strings",
    **{
        f"sides/{side}/{name}": kind
        for side in SIDE_NAMES
        for name, kind in (
            ("context_ids", "integers"),
            ("context_offsets", "integers"),
            ("context_text_offsets", "integers"),
            ("context_text", "bytes"),
        )
    },
}
_KIND_TEST = {
    "integers": lambda dtype: dtype.kind in "iu",
    "numbers": lambda dtype: dtype.kind in "iuf",
    "strings": lambda dtype: h5py.check_string_dtype(dtype) is not None,
    "bytes": lambda dtype: dtype == np.uint8,
}
_OFFSET_PAIRS = tuple(
    (f"sides/{side}/{offsets}", f"sides/{side}/{data}")
    for side in SIDE_NAMES
    for offsets, data in (("context_offsets", "context_ids"), ("context_text_offsets", "context_text"))
)
MAX_CHUNK_BYTES = 16 << 20  # this project writes chunks under 1 MiB
_ALLOWED_VALUES = {"examples/correct": (-1, 0, 1), "positions/source": (0, 1, 2)}  # the optional additions' codes


def _kinds() -> dict[str, str]:
    stats = {
        dataset: "integers" if np.dtype(stat.dtype).kind in "iu" else "numbers"
        for stat in statistics.STATISTICS
        for dataset in stat.datasets()
    }
    return {**_KIND_OF, **stats}


def _check_stored(f: h5py.File, fail) -> None:
    """Every claimed length is backed by stored chunks. Run before any dataset is read, so no reader allocates
    from a number a file merely claims."""
    for name in _dataset_paths(f):
        ds = f[name]
        if ds.size == 0:
            continue
        if ds.chunks is None:
            stored, claimed = ds.id.get_storage_size(), ds.size * ds.dtype.itemsize
        else:
            if math.prod(ds.chunks) * ds.dtype.itemsize > MAX_CHUNK_BYTES:
                raise fail(f"/{name} has chunks of {ds.chunks} entries, larger than any artifact writes")
            stored = ds.id.get_num_chunks()
            claimed = math.prod(-(-n // c) for n, c in zip(ds.shape, ds.chunks, strict=True))
        if stored < claimed:
            raise fail(f"/{name} claims shape {ds.shape} but the file holds only part of it")


def _check_contents(f: h5py.File, offsets: np.ndarray, fail) -> None:
    """What shapes alone do not show: types are as documented, each offsets array stays inside its dataset,
    /positions/example and /t agree with /examples/offsets, and no token id is listed twice."""
    for name, kind in _kinds().items():
        if name in f and not _KIND_TEST[kind](f[name].dtype):
            raise fail(f"/{name} has type {f[name].dtype}, expected {kind}")
    for offsets_name, data_name in _OFFSET_PAIRS:
        if offsets_name not in f:
            continue  # context text is an optional addition
        bounds = f[offsets_name][()]
        if bounds[0] != 0 or np.any(np.diff(bounds) < 0) or bounds[-1] != f[data_name].shape[0]:
            raise fail(f"/{offsets_name} must start at 0, never decrease and end at the length of /{data_name}")
    lengths = np.diff(offsets)
    if not np.array_equal(f["positions/example"][()], np.repeat(np.arange(len(lengths)), lengths)):
        raise fail("/positions/example disagrees with /examples/offsets")
    if not np.array_equal(f["positions/t"][()], np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)):
        raise fail("/positions/t does not count 0, 1, ... within each example")
    if len(np.unique(f["tokens/id"][()])) != f["tokens/id"].shape[0]:
        raise fail("/tokens/id lists an id more than once")
    if "positions/source" in f and f["positions/source"].shape != (offsets[-1],):
        raise fail(f"/positions/source has shape {f['positions/source'].shape}, expected ({offsets[-1]},)")
    if "positions/decoding_logprobs" in f and f["positions/decoding_logprobs"].shape != (offsets[-1], 3):
        shape = f["positions/decoding_logprobs"].shape
        raise fail(f"/positions/decoding_logprobs has shape {shape}, expected ({offsets[-1]}, 3)")
    for name, allowed in _ALLOWED_VALUES.items():
        if name in f and not np.isin(f[name][()], allowed).all():
            raise fail(f"/{name} holds values other than {', '.join(map(str, allowed))}")


def read_examples(artifact: Artifact) -> list[ExampleScores]:
    """All examples of an artifact as ExampleScores (used to merge partial work)."""
    cols = {name: artifact.read(name) for name in (*_EXAMPLE_ROWS, "examples/offsets", "positions/token_id")}
    index = artifact.dataset_indices()
    stats = {dataset: artifact.read(dataset) for dataset, _, _ in artifact.statistics()}
    branching = {side: read_branching(artifact, side) for side in SIDE_NAMES} if has_branching(artifact) else None
    judged = artifact.has("examples/correct")
    references = artifact.read("examples/reference") if judged else [None] * artifact.n_examples
    correct = artifact.read("examples/correct") if judged else [-1] * artifact.n_examples
    source = artifact.read("positions/source") if artifact.has("positions/source") else None
    logprobs = artifact.read("positions/decoding_logprobs") if artifact.has("positions/decoding_logprobs") else None
    offsets = cols["examples/offsets"]
    contexts = {side: _contexts(artifact, side) for side in SIDE_NAMES}
    examples = []
    for e in range(artifact.n_examples):
        rows = slice(int(offsets[e]), int(offsets[e + 1]))
        examples.append(
            ExampleScores(
                index=int(index[e]),
                id=cols["examples/id"][e],
                prompt=cols["examples/prompt"][e],
                response=cols["examples/response"][e],
                token_ids=cols["positions/token_id"][rows],
                contexts={side: contexts[side][e] for side in SIDE_NAMES},
                stats={dataset: values[rows] for dataset, values in stats.items()},
                branching={side: branching[side][e] for side in SIDE_NAMES} if branching else None,
                reference=references[e],
                correct=int(correct[e]),
                source=None if source is None else source[rows],
                decoding_logprobs=None if logprobs is None else logprobs[rows],
            )
        )
    return examples


# How a run's answers were decoded (root attribute `decoding`): one side alone, or both sides stepping together
# under a rule of the registry (compute/core/rules/; `positions/source` says whose token each was). "greedy" is the
# shared design notes' name for a file without the attribute.
PURE_RULES, MIXED_RULES = rules.PURE_RULES, rules.MIXED_RULES


def decoding(artifact: Artifact) -> tuple[str, dict[str, object]]:
    """The decoding rule and its parameters (the root attributes `decoding_*`, without the prefix). A file
    without the attribute holds the aligned side's own answers, or answers given: rule "aligned"."""
    rule = str(artifact.attrs.get("decoding", "aligned"))
    return ("aligned" if rule == "greedy" else rule), rules.params_of(artifact.attrs)


@dataclass(frozen=True)
class Judged:
    """A verifiable task's verdicts over a run's answers."""

    task: str  # the judge's name (root attribute `task`)
    right: int
    judged: int  # answers judged (examples/correct is 0 or 1; -1 is not judged)

    @property
    def accuracy(self) -> float | None:
        return self.right / self.judged if self.judged else None


def judged(artifact: Artifact) -> Judged | None:
    """The task's verdicts, or None where the run stores none (no /examples/correct)."""
    if not artifact.has("examples/correct"):
        return None
    correct = artifact.read("examples/correct")
    return Judged(str(artifact.attrs.get("task", "unnamed task")), int((correct == 1).sum()), int((correct >= 0).sum()))


BRANCHING_ROWS = ("entropy", "token_id", "logprob")


def has_branching(artifact: Artifact) -> bool:
    return all(artifact.has(f"branching/{side}/sample_offsets") for side in SIDE_NAMES)


def branching_attrs(artifact: Artifact, side: str) -> dict[str, object]:
    """samples, temperature, top_p, max_new_tokens (and seed) of a side's sampled continuations."""
    try:
        with h5py.File(artifact.path, "r") as f:
            return {key: _text(value) for key, value in f[f"branching/{side}"].attrs.items()}
    except (OSError, KeyError) as err:
        raise ArtifactError(f"{artifact.path}: cannot read /branching/{side}: {one_line(err)}") from None


def read_branching(artifact: Artifact, side: str) -> list[ExampleSamples]:
    """One side's sampled continuations, one ExampleSamples per example (the file must have them)."""
    n = int(branching_attrs(artifact, side)["samples"])
    offsets = artifact.read(f"branching/{side}/sample_offsets")
    rows = {name: artifact.read(f"branching/{side}/{name}") for name in BRANCHING_ROWS}
    examples = []
    for e in range(artifact.n_examples):
        bounds = offsets[e * n : (e + 1) * n + 1]
        steps = slice(int(bounds[0]), int(bounds[-1]))
        examples.append(ExampleSamples(bounds - bounds[0], *(rows[name][steps] for name in BRANCHING_ROWS)))
    return examples


def _check_branching(f: h5py.File, n_examples: int, fail) -> None:
    """The optional /branching groups, when present: attrs, offsets over E x n samples, rows of one length."""
    if "branching" not in f:
        return
    for side in SIDE_NAMES:
        group = f"branching/{side}"
        if group not in f:
            raise fail(f"group /{group} is missing (a file with /branching has both sides)")
        for key in ("samples", "temperature", "top_p", "max_new_tokens"):
            if key not in f[group].attrs:
                raise fail(f"attribute {key} of /{group} is missing")
        n = int(f[group].attrs["samples"])
        for name in ("sample_offsets", *BRANCHING_ROWS):
            if name not in f[group] or f[f"{group}/{name}"].ndim != 1:
                raise fail(f"dataset /{group}/{name} is missing or not 1-D")
        offsets = f[f"{group}/sample_offsets"][()]
        if len(offsets) != n_examples * n + 1:
            raise fail(f"/{group}/sample_offsets has {len(offsets)} entries, expected E*n+1 = {n_examples * n + 1}")
        n_steps = f[f"{group}/entropy"].shape[0]
        if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or offsets[-1] != n_steps:
            raise fail(f"/{group}/sample_offsets must start at 0, never decrease and end at {n_steps}")
        for name in BRANCHING_ROWS:
            if f[f"{group}/{name}"].shape != (n_steps,):
                raise fail(f"/{group}/{name} has shape {f[f'{group}/{name}'].shape}, expected ({n_steps},)")


def _contexts(artifact: Artifact, side: str) -> list[SideContext]:
    ids, id_offsets = artifact.read(f"sides/{side}/context_ids"), artifact.read(f"sides/{side}/context_offsets")
    texts = [""] * artifact.n_examples
    if artifact.has(f"sides/{side}/context_text"):
        data = artifact.read(f"sides/{side}/context_text")
        text_offsets = artifact.read(f"sides/{side}/context_text_offsets")
        texts = [data[text_offsets[e] : text_offsets[e + 1]].tobytes().decode() for e in range(artifact.n_examples)]
    return [SideContext(ids[id_offsets[e] : id_offsets[e + 1]], texts[e]) for e in range(artifact.n_examples)]


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
