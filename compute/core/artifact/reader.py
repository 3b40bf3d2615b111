"""Open a checked artifact and read its columns on demand (docs/artifact-format.md).

Every read goes through `open_artifact`, which refuses a file that is not a complete format-v1 artifact with one
`ArtifactError` line (the checks are in checks.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from compute.core import statistics
from compute.core.artifact.checks import check_file, dataset_paths
from compute.core.artifact.errors import ArtifactError
from compute.core.artifact.layout import attribute_value
from compute.core.errors import one_line
from compute.core.statistics import SIDE_NAMES


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


def open_artifact(path: Path | str) -> Artifact:
    """Open and check an artifact; raise ArtifactError naming the file and the fault."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file")
    try:
        with h5py.File(path, "r") as f:
            check_file(path, f)
            return _artifact(path, f)
    except ArtifactError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ArtifactError(f"{path}: not a readable HDF5 artifact (truncated or corrupt?): {one_line(err)}") from None


def _artifact(path: Path, f: h5py.File) -> Artifact:
    """The facts of a file that passed `check_file`."""
    attrs = {key: attribute_value(f.attrs[key]) for key in f.attrs}
    offsets = f["examples/offsets"]
    return Artifact(
        path=path,
        name=str(attrs["name"]),
        top_k=int(attrs["top_k"]),
        n_examples=offsets.shape[0] - 1,
        n_positions=int(offsets[-1]),
        attrs=attrs,
        side_attrs={
            side: {key: attribute_value(value) for key, value in f[f"sides/{side}"].attrs.items()}
            for side in SIDE_NAMES
        },
        datasets=frozenset(dataset_paths(f)),
    )
