"""Checks of the planned examples against the loaded sides, before any scoring: each fits the context windows,
and answer ids taken from another artifact are in this pair's vocabulary."""

from __future__ import annotations

from compute.core.config import RunConfig
from compute.core.inputs import RunError
from compute.engine.planning import Planned
from compute.engine.sides import Side


def check_context_windows(config: RunConfig, sides: dict[str, Side], planned: dict[int, Planned]) -> None:
    """Refuse, before any scoring, an example longer than a side's context window (generation budget included)."""
    for name, side in sides.items():
        window = side.model.context_window
        if not window:
            continue
        for p in planned.values():
            length = len(p.contexts[name]) + (len(p.answer) if p.answer is not None else config.max_new_tokens)
            if length > window:
                budget = "answer" if p.answer is not None else f"max_new_tokens {config.max_new_tokens}"
                raise RunError(
                    f"{config.dataset}: example {p.example.id!r}: the {name} side's context and {budget} are "
                    f"{length} tokens, more than the context window of {side.config.model} ({window})"
                )


def check_answer_ids(config: RunConfig, sides: dict[str, Side], planned: dict[int, Planned]) -> None:
    """Answer ids taken from another artifact must exist in this pair's vocabulary (same tokenizer family)."""
    vocabulary = len(sides["aligned"].tokenizer)
    for p in planned.values():
        if p.example.answer_ids and max(p.example.answer_ids) >= vocabulary:
            raise RunError(
                f"{config.dataset}: example {p.example.id!r}: answer token id {max(p.example.answer_ids)} is outside "
                f"the vocabulary of {config.aligned.model} ({vocabulary} tokens); the artifact's pair used another "
                f"tokenizer"
            )
