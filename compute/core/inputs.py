"""A run's inputs, checked before any model loads: its output files and its examples (`tds validate` and `tds
run` both use these; no torch)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from compute import tasks
from compute.core.config import ConfigError, RunConfig
from compute.core.datasets import DatasetError, Example, load_examples
from compute.core.errors import UserError


class RunError(UserError):
    """A run that cannot start or finish; one line for the user."""


def output_paths(config: RunConfig) -> dict[str, Path]:
    """Each artifact the run writes, by name: out_dir/NAME.h5 (a control's pairs: NAME-ROLE.h5)."""
    return {plan.name: config.out_dir / f"{plan.name}.h5" for plan in config.pairs()}


def check_output(config: RunConfig, overwrite: bool) -> dict[str, Path]:
    """The artifacts' final paths; refuse existing ones and an out_dir that cannot be written."""
    paths = output_paths(config)
    for path in paths.values():
        if path.is_dir():
            raise RunError(f"{path}: is a folder, not an artifact; move it away to write the run")
        if path.exists() and not overwrite:
            raise RunError(f"{path}: an artifact of that name exists (use --overwrite to replace it)")
    try:
        config.out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=config.out_dir):
            pass
    except OSError as err:
        raise RunError(f"out_dir {config.out_dir} is not writable: {err.strerror or err}") from None
    return paths


def select_examples(config: RunConfig, limit: int | None) -> list[Example]:
    examples = load_examples(config.dataset)
    if config.task and all(e.reference is None for e in examples):
        raise ConfigError(
            f"{config.path}: task {config.task!r} judges responses against a `reference` field, "
            f"and no example of {config.dataset} has one"
        )
    if config.task:
        check_reference = tasks.REFERENCE_CHECKS[config.task]
        for e in examples:
            if e.reference is not None and (problem := check_reference(e.reference)):
                raise DatasetError(
                    f"{config.dataset}: example {e.id!r}: reference {e.reference!r} {problem} "
                    f"(task {config.task!r} needs one)"
                )
    if config.decoding and any(e.response is not None for e in examples):
        raise ConfigError(
            f"{config.path}: [decoding] decides how answers are generated, and {config.dataset} gives answers "
            "(drop their `response` or the [decoding] table)"
        )
    return examples[:limit] if limit else examples
