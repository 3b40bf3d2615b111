"""Datasets to examples: JSONL, the URIAL / just-eval JSON list, the alpaca_eval JSON list.

- JSONL (.jsonl): `instruction` (required), `id` (optional, else the line
  number, from 1), `response` (optional: the answer taken as given),
  `reference` (optional: the expected answer a task's judge compares with).
- URIAL / just-eval JSON list: instruction from `pure_input`, answer from
  `output[0]` (or a string `output`), id from `id`.
- alpaca_eval JSON list: `instruction`, answer from `output`, id from `id` or
  the list index.
- A run's artifact (.h5): its examples' prompts, ids, answers and references
  (a task's), the answers as the very token ids it stored (never
  re-tokenised), so runs of other pairs over them share answers position by
  position (a stage chain).
Answers are kept byte for byte: nothing is stripped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from compute.core.errors import UserError


class DatasetError(UserError):
    """A dataset that cannot be used; the message is one line naming the file and the record."""


@dataclass(frozen=True)
class Example:
    index: int  # position in the dataset
    id: str
    instruction: str
    response: str | None  # None: the aligned side generates it
    answer_ids: tuple[int, ...] | None = None  # the answer's exact token ids, when the dataset is an artifact
    reference: str | None = None  # the expected answer of a verifiable task (JSONL `reference`)


def load_examples(path: Path) -> list[Example]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset not found")
    if path.suffix in ARTIFACT_SUFFIXES:
        return _artifact(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if path.suffix == ".jsonl":
        examples = _jsonl(path, text)
    else:
        examples = _json_list(path, text)
    if not examples:
        raise DatasetError(f"{path}: the dataset has no examples")
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise DatasetError(f"{path}: id {example.id!r} appears more than once")
        seen.add(example.id)
    return examples


ARTIFACT_SUFFIXES = (".h5", ".hdf5")


def _artifact(path: Path) -> list[Example]:
    """Another run's examples with its answers' token ids (the file is checked as any artifact is)."""
    from compute.core.artifact.errors import ArtifactError  # the artifact package is not needed for text datasets
    from compute.core.artifact.reader import open_artifact

    try:
        artifact = open_artifact(path)
        ids, prompts, responses = (artifact.read(f"examples/{key}") for key in ("id", "prompt", "response"))
        offsets, tokens = artifact.read("examples/offsets"), artifact.read("positions/token_id")
        references = artifact.read("examples/reference") if artifact.has("examples/reference") else None
    except ArtifactError as err:
        raise DatasetError(f"dataset {err}") from None
    if not len(ids):
        raise DatasetError(f"{path}: the artifact has no examples")
    return [
        Example(
            index=e,
            id=str(ids[e]),
            instruction=str(prompts[e]),
            response=str(responses[e]),
            answer_ids=tuple(int(i) for i in tokens[offsets[e] : offsets[e + 1]]),
            reference=str(references[e]) if references is not None and references[e] != "" else None,
        )
        for e in range(len(ids))
    ]


def _jsonl(path: Path, text: str) -> list[Example]:
    examples = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}:{line_number}: malformed JSON line ({err.msg})") from None
        where = f"{path}:{line_number}"
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: a line must be a JSON object")
        examples.append(
            Example(
                index=len(examples),
                id=_id(record.get("id", line_number), where),
                instruction=_instruction(record, "instruction", where),
                response=_response(record, "response", where),
                reference=_reference(record, where),
            )
        )
    return examples


def _json_list(path: Path, text: str) -> list[Example]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
    if not isinstance(records, list):
        raise DatasetError(f"{path}: expected a JSON list of examples (or use .jsonl, one object a line)")
    examples = []
    for i, record in enumerate(records):
        where = f"{path}: example {i}"
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: must be a JSON object")
        if "pure_input" in record:  # URIAL / just-eval
            instruction = _instruction(record, "pure_input", where)
        else:  # alpaca_eval
            instruction = _instruction(record, "instruction", where)
        examples.append(
            Example(
                index=i,
                id=_id(record.get("id", i), where),
                instruction=instruction,
                response=_response(record, "output", where),
            )
        )
    return examples


def _id(value: object, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DatasetError(f"{where}: id must be a string or an integer, got {value!r}")
    return _unicode(str(value), "id", where)


def _unicode(value: str, key: str, where: str) -> str:
    """JSON escapes can spell lone surrogates ("\\ud800"), which are not text and cannot be stored."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise DatasetError(
            f"{where}: field {key!r} is not valid Unicode ({err.reason} {value[err.start]!r} at character {err.start})"
        ) from None
    return value


def _instruction(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: no instruction (field {key!r} missing or empty)")
    return _unicode(value, key, where)


def _reference(record: dict, where: str) -> str | None:
    value = record.get("reference")
    if value is not None and not isinstance(value, str):
        raise DatasetError(f"{where}: field 'reference' must be a string, got {value!r}")
    return value if value is None else _unicode(value, "reference", where)


def _response(record: dict, key: str, where: str) -> str | None:
    value = record.get(key)
    if isinstance(value, list):
        if not value or not isinstance(value[0], str):
            raise DatasetError(f"{where}: field {key!r} must be a string or a list whose first entry is a string")
        return _unicode(value[0], key, where)
    if value is not None and not isinstance(value, str):
        raise DatasetError(f"{where}: field {key!r} must be a string")
    return value if value is None else _unicode(value, key, where)
