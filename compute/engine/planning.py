"""A run's examples made ready to run: each side's context rendered, file answers tokenised, the cost of each
counted, and the examples batched longest first."""

from __future__ import annotations

from dataclasses import dataclass

from compute.core.config import RunConfig
from compute.core.datasets import Example
from compute.engine.sides import Side


@dataclass
class Planned:
    """An example ready to run: each side's context, and the answer ids when the file gives them."""

    example: Example
    contexts: dict[str, list[int]]
    context_texts: dict[str, str]
    answer: list[int] | None
    cost: int  # the longest side's sequence length, generation budget included


def plan(sides: dict[str, Side], examples: list[Example], max_new_tokens: int) -> dict[int, Planned]:
    """Render contexts and tokenise file answers once (alone, no special tokens) for every side."""
    tokenizer = sides["aligned"].tokenizer
    planned = {}
    for example in examples:
        texts = {name: side.render(example.instruction) for name, side in sides.items()}
        contexts = {name: side.context_ids(texts[name]) for name, side in sides.items()}
        answer = None
        if example.answer_ids is not None:
            answer = list(example.answer_ids)
        elif example.response is not None:
            answer = tokenizer(example.response, add_special_tokens=False).input_ids
        longest_context = max(len(c) for c in contexts.values())
        cost = longest_context + (len(answer) if answer is not None else max_new_tokens)
        planned[example.index] = Planned(example, contexts, texts, answer, cost)
    return planned


def make_batches(indices: list[int], planned: dict[int, Planned], config: RunConfig) -> list[list[int]]:
    """Longest first; at most batch_size examples and, when set, max_batch_tokens padded tokens."""
    ordered = sorted(indices, key=lambda i: (-planned[i].cost, i))
    batches: list[list[int]] = []
    for index in ordered:
        if batches:
            batch = batches[-1]
            width = planned[batch[0]].cost  # the longest, as the batch is sorted
            fits_tokens = config.max_batch_tokens is None or width * (len(batch) + 1) <= config.max_batch_tokens
            if len(batch) < config.batch_size and fits_tokens:
                batch.append(index)
                continue
        batches.append([index])
    return batches
