"""DPO preference pairs, built offline: Llama-2-7b-chat's answer preferred over the base model's own.

For just-eval prompts past the held-out block (and not used by SFT: taken from
the back of the same seeded order), chosen = Llama-2-7b-chat's answer cut at a
sentence end, rejected = gemma-3-270m base's greedy answer under the plain
"# Query:/# Answer:" template, cut where it starts a new query. The pair
pushes the tuned model away from what the untuned model does by itself
(continuing the document, looping, starting new queries) towards the chat
assistant's answers; both sides are of similar length.

    python -m compute.train.pairs --pairs 64    # writes data/dpo-pairs.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from compute.cli import OneLineParser, positive_int
from compute.train import common, justeval

BASE_TEMPLATE = "# Query:\n{instruction}\n# Answer:\n"
STOP_MARKERS = ("\n# Query", "\n# Answer", "\n#", "<end_of_turn>", "<start_of_turn>")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="tds train pairs", description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help=f"base model folder (default: the packaged {common.BASE_PACKAGE})")
    parser.add_argument("--pairs", type=positive_int, default=64)
    parser.add_argument("--answer-tokens", type=positive_int, default=128, help="cap on both answers' length in tokens")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="the same seed as SFT keeps the two disjoint")
    parser.add_argument("--just-eval", type=Path, default=justeval.JUST_EVAL)
    parser.add_argument("--out", type=Path, default=Path("data/dpo-pairs.jsonl"))
    return parser.parse_args(argv)


def cut_base_answer(text: str) -> str:
    """The base model's answer up to where it starts another query or turn."""
    ends = [text.find(marker) for marker in STOP_MARKERS if marker in text]
    return (text[: min(ends)] if ends else text).strip()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.set_threads()
    folder = common.base_folder(args.base)
    tokenizer = common.load_tokenizer(folder)
    model = common.load_model(folder)
    model.eval()
    records = justeval.records(args.just_eval)
    chosen_from = justeval.training_pool(len(records), args.seed)[::-1][: args.pairs]
    instructions = [records[i]["instruction"] for i in chosen_from]
    start = time.monotonic()
    prompts = [BASE_TEMPLATE.format(instruction=i) for i in instructions]
    base_answers = common.generate_batched(model, tokenizer, prompts, args.answer_tokens, args.batch_size)
    print(f"generated {len(prompts)} base answers in {time.monotonic() - start:.0f}s")
    rows = []
    for index, instruction, base_answer in zip(chosen_from, instructions, base_answers, strict=True):
        rejected = cut_base_answer(base_answer)
        if not rejected:
            continue
        chosen = justeval.cut_answer(records[index]["answer"], tokenizer, args.answer_tokens)
        rows.append({"id": index, "prompt": common.prompt(instruction), "chosen": chosen, "rejected": rejected})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_suffix(".jsonl.tmp")
    partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    partial.replace(args.out)
    print(f"wrote {len(rows)} pairs to {args.out} ({len(prompts) - len(rows)} empty base answers dropped)")


if __name__ == "__main__":
    common.run_main(main)
