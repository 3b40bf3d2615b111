"""The in-memory records of one run: what `write_artifact` writes and `read_examples` gives back."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compute.core.branching import ExampleSamples


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
