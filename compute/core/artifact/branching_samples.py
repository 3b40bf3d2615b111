"""The optional /branching groups: each side's sampled continuations (format section "Branching factor").

They are written by writer.py and checked by checks.py; this module reads them.
"""

from __future__ import annotations

import h5py

from compute.core.artifact.errors import ArtifactError
from compute.core.artifact.layout import BRANCHING_ROWS, attribute_value
from compute.core.artifact.reader import Artifact
from compute.core.branching import ExampleSamples
from compute.core.errors import one_line
from compute.core.statistics import SIDE_NAMES


def has_branching(artifact: Artifact) -> bool:
    return all(artifact.has(f"branching/{side}/sample_offsets") for side in SIDE_NAMES)


def branching_attrs(artifact: Artifact, side: str) -> dict[str, object]:
    """samples, temperature, top_p, max_new_tokens (and seed) of a side's sampled continuations."""
    try:
        with h5py.File(artifact.path, "r") as f:
            return {key: attribute_value(value) for key, value in f[f"branching/{side}"].attrs.items()}
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
