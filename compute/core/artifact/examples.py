"""Every example of an artifact back as the records a run writes (to merge partial work with new)."""

from __future__ import annotations

from compute.core.artifact.branching_samples import has_branching, read_branching
from compute.core.artifact.layout import EXAMPLE_ROWS
from compute.core.artifact.reader import Artifact
from compute.core.artifact.records import ExampleScores, SideContext
from compute.core.statistics import SIDE_NAMES


def read_examples(artifact: Artifact) -> list[ExampleScores]:
    """All examples of an artifact as ExampleScores (used to merge partial work)."""
    cols = {name: artifact.read(name) for name in (*EXAMPLE_ROWS, "examples/offsets", "positions/token_id")}
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



def _contexts(artifact: Artifact, side: str) -> list[SideContext]:
    ids, id_offsets = artifact.read(f"sides/{side}/context_ids"), artifact.read(f"sides/{side}/context_offsets")
    texts = [""] * artifact.n_examples
    if artifact.has(f"sides/{side}/context_text"):
        data = artifact.read(f"sides/{side}/context_text")
        text_offsets = artifact.read(f"sides/{side}/context_text_offsets")
        texts = [data[text_offsets[e] : text_offsets[e + 1]].tobytes().decode() for e in range(artifact.n_examples)]
    return [SideContext(ids[id_offsets[e] : id_offsets[e + 1]], texts[e]) for e in range(artifact.n_examples)]
