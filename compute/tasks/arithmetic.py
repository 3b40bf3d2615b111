"""One-digit arithmetic word problems with an exact judge.

Every problem the templates can make is enumerated, shuffled with a seed and
cut into a test split (first) and a train split (after it), so the two never
share an instruction. Numbers are one digit: gemma-3-270m base sometimes
solves those, which a reward needs in order to move (2-3 digit sums scored 0).

    python -m compute.tasks.arithmetic            # writes data/arithmetic-{train,test}.jsonl

The judge reads the first number in a response: "The answer is 7." -> 7.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

NAMES = ("Anna", "Ben", "Carla", "Dev", "Emma", "Farid", "Grace", "Hugo")
ITEMS = ("apples", "books", "coins", "marbles", "pencils", "stickers", "cookies", "shells")
ADD = (
    "{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
    "There are {a} {item} in a box. {name} puts in {b} more. How many {item} are in the box?",
    "{name} bought {a} {item} on Monday and {b} {item} on Tuesday. How many {item} did {name} buy?",
)
SUBTRACT = ("{name} has {a} {item} and gives away {b}. How many {item} does {name} have left?",)
ANSWER_FORMAT = "The answer is {reference}."
SEED = 0
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def all_problems() -> list[dict]:
    """Every problem, in a fixed order: sums of two digits 1-9, differences a - b with a >= b."""
    problems = []
    for name, item, a, b in itertools.product(NAMES, ITEMS, range(1, 10), range(1, 10)):
        for template in ADD:
            problems.append({"instruction": template.format(name=name, item=item, a=a, b=b), "reference": str(a + b)})
        if a >= b:
            for template in SUBTRACT:
                problems.append(
                    {"instruction": template.format(name=name, item=item, a=a, b=b), "reference": str(a - b)}
                )
    return problems


def split(n_train: int, n_test: int, seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """Disjoint train and test problems; the same seed gives the same splits."""
    problems = all_problems()
    if n_train + n_test > len(problems):
        raise ValueError(f"only {len(problems)} distinct problems; asked for {n_train} + {n_test}")
    random.Random(seed).shuffle(problems)
    test = [{"id": f"test-{i}", **p} for i, p in enumerate(problems[:n_test])]
    train = [{"id": f"train-{i}", **p} for i, p in enumerate(problems[n_test : n_test + n_train])]
    return train, test


def first_number(response: str) -> float | None:
    match = _NUMBER.search(response)
    return float(match.group()) if match else None


def reference_problem(reference: str) -> str | None:
    """Why the judge cannot compare answers with `reference` (None when it can): it must be a number as the
    judge reads one from an answer, so "seven", "", "nan" and "1e999" are refused rather than judged wrong."""
    if not _NUMBER.fullmatch(reference.strip()):
        return "is not a number such as 7, -2 or 2.5"
    return None


def is_correct(response: str, reference: str) -> bool:
    """True when the first number in the response equals the reference."""
    number = first_number(response)
    return number is not None and number == float(reference)


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    from compute.cli import OneLineParser

    parser = OneLineParser(prog="python -m compute.tasks.arithmetic", description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000, help="number of train problems")
    parser.add_argument("--test", type=int, default=200, help="number of test problems")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=Path("data"), help="folder for arithmetic-{train,test}.jsonl")
    args = parser.parse_args(argv)
    try:
        train, test = split(args.train, args.test, args.seed)
    except ValueError as error:
        parser.error(str(error))
    for name, records in (("train", train), ("test", test)):
        write_jsonl(args.out / f"arithmetic-{name}.jsonl", records)
        print(f"wrote {len(records)} problems to {args.out / f'arithmetic-{name}.jsonl'}")


if __name__ == "__main__":
    main()
