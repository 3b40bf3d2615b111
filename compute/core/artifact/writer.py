"""Write one run as a format-v1 artifact, atomically (docs/artifact-format.md)."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from compute.core import statistics
from compute.core.artifact.errors import ArtifactError
from compute.core.artifact.layout import FORMAT, FORMAT_VERSION, NUL_STANDIN
from compute.core.artifact.records import ExampleScores, RunMeta
from compute.core.errors import one_line
from compute.core.files import write_atomically
from compute.core.statistics import SIDE_NAMES

_STR = h5py.string_dtype("utf-8")
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
_NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


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
