"""The just-eval Llama-2-7b-chat answers as training data, with the scored block held out."""

from __future__ import annotations

import json
import random
from pathlib import Path

from compute.train.common import TrainingError

JUST_EVAL = Path("data/just-eval-instruct.llama-2-7b-chat.json")
HELD_OUT = 200  # indices below this are scored by the shipped runs and never trained on


def records(path: Path) -> list[dict]:
    """{"instruction", "answer"} per just-eval record, in dataset order."""
    if not path.is_file():
        raise TrainingError(f"--just-eval: no such file: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [{"instruction": r["pure_input"], "answer": _first(r["output"])} for r in data]
    except (json.JSONDecodeError, KeyError, TypeError, IndexError) as error:
        raise TrainingError(f"--just-eval: {path} is not a list of just-eval records ({error})") from None


def _first(output: str | list[str]) -> str:
    """just-eval stores each output as a one-element list."""
    return output[0] if isinstance(output, list) else output


def training_pool(count: int, seed: int) -> list[int]:
    """Indices past the held-out block in a seeded order: SFT takes from the front, DPO from the back."""
    pool = list(range(HELD_OUT, count))
    random.Random(seed).shuffle(pool)
    return pool


def cut_answer(text: str, tokenizer, max_tokens: int) -> str:
    """The answer within max_tokens, cut after its last full sentence or line when it is longer."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text.strip()
    head = tokenizer.decode(ids[:max_tokens])
    end = max(head.rfind(". "), head.rfind(".\n"), head.rfind("\n"))
    return (head[: end + 1] if end > len(head) // 2 else head).strip()
