"""Every check a file must pass before it is read: `check_file` raises one ArtifactError line naming the file
and the fault, so no reader meets a truncated, foreign or inconsistent artifact (docs/artifact-format.md)."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

from compute.core import statistics
from compute.core.artifact.errors import ArtifactError
from compute.core.artifact.layout import (
    BRANCHING_ROWS,
    EXAMPLE_ROWS,
    FORMAT,
    FORMAT_VERSION,
    OPTIONAL_EXAMPLE_ROWS,
    POSITION_ROWS,
    SIDE_ATTRS,
    attribute_value,
)
from compute.core.statistics import SIDE_NAMES


def check_file(path: Path, f: h5py.File) -> None:
    """Raise ArtifactError naming `path` and the first fault found, or return for a complete format-v1 file."""

    def fail(what: str) -> ArtifactError:
        return ArtifactError(f"{path}: {what}")

    attrs = {key: attribute_value(f.attrs[key]) for key in f.attrs}
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
    for name in EXAMPLE_ROWS:
        if shape(name) != (n_examples,):
            raise fail(f"/{name} has shape {shape(name)}, expected ({n_examples},)")
    for name in POSITION_ROWS:
        if shape(name) != (n_positions,):
            raise fail(f"/{name} has shape {shape(name)}, expected ({n_positions},)")
    for name in OPTIONAL_EXAMPLE_ROWS:
        if name in f and shape(name) != (n_examples,):
            raise fail(f"/{name} has shape {shape(name)}, expected ({n_examples},)")
    for side in SIDE_NAMES:
        group = f"sides/{side}"
        if group not in f:
            raise fail(f"group /{group} is missing")
        s_attrs = {key: attribute_value(f[group].attrs[key]) for key in f[group].attrs}
        for key in SIDE_ATTRS:
            if key not in s_attrs:
                raise fail(f"attribute {key} of /{group} is missing")
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


def dataset_paths(f: h5py.File) -> list[str]:
    """The path of every dataset in the file."""
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
    for name in dataset_paths(f):
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
