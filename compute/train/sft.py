"""SFT stage: a LoRA on gemma-3-270m base, trained with TRL's SFTTrainer.

Data: Llama-2-7b-chat's just-eval answers (indices 0-199 held out: those are
scored later), answers cut at a sentence end within --answer-tokens, plus
arithmetic-train problems answered as "The answer is N." so that GRPO starts
from a model that knows the task's format. The loss is on the answer only, and
every answer ends with <end_of_turn> so the model learns to stop.

    python -m compute.train.sft --examples 150 --arithmetic 60
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from compute.cli import positive_int
from compute.tasks.arithmetic import ANSWER_FORMAT
from compute.train import common, justeval

ARITHMETIC_TRAIN = Path("data/arithmetic-train.jsonl")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.stage_parser(__doc__, "sft")
    parser.add_argument("--examples", type=int, default=150, help="just-eval answers to train on")
    parser.add_argument("--arithmetic", type=int, default=60, help="arithmetic-train problems to train on")
    parser.add_argument(
        "--answer-tokens", type=positive_int, default=320, help="answers are cut within this many tokens"
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--grad-accum", type=positive_int, default=4)
    parser.add_argument("--max-steps", type=int, default=-1, help="optimizer steps (overrides --epochs)")
    parser.add_argument("--samples", type=int, default=3, help="held-out prompts answered greedily after training")
    parser.add_argument("--just-eval", type=Path, default=justeval.JUST_EVAL)
    parser.add_argument("--arithmetic-file", type=Path, default=ARITHMETIC_TRAIN)
    return common.parse_stage_args(parser, argv)


def training_rows(args: argparse.Namespace, tokenizer) -> list[dict]:
    """Prompt/completion rows: just-eval answers past the held-out block, then arithmetic, shuffled."""
    records = justeval.records(args.just_eval)
    pool = justeval.training_pool(len(records), args.seed)
    rows = [
        {
            "prompt": common.prompt(records[i]["instruction"]),
            "completion": justeval.cut_answer(records[i]["answer"], tokenizer, args.answer_tokens),
        }
        for i in pool[: args.examples]
    ]
    for problem in common.read_jsonl(args.arithmetic_file)[: args.arithmetic]:
        rows.append(
            {
                "prompt": common.prompt(problem["instruction"]),
                "completion": ANSWER_FORMAT.format(reference=problem["reference"]),
            }
        )
    random.Random(args.seed).shuffle(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.set_threads()
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    folder = common.base_folder(args.base)
    tokenizer = common.load_tokenizer(folder)
    rows = training_rows(args, tokenizer)
    model = common.load_model(folder)
    config = SFTConfig(
        **common.common_training_args(args),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=2,
        max_length=args.answer_tokens + 192,
        completion_only_loss=True,
        eos_token=common.END_OF_TURN,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=common.lora_config(),
        callbacks=common.training_callbacks(args.max_minutes),
    )
    seconds = common.train_timed(trainer)
    losses = common.curve(trainer.state.log_history, "loss")
    print(
        f"SFT: {trainer.state.global_step} steps, {len(rows)} rows, {seconds:.0f}s, loss {common.ends(losses, 'loss')}"
    )
    samples = held_out_samples(trainer.model, tokenizer, args)
    common.save_adapter(
        trainer.model,
        tokenizer,
        args,
        {
            "stage": "sft",
            "rows": len(rows),
            "steps": trainer.state.global_step,
            "train_seconds": round(seconds),
            "loss": losses,
            "samples": samples,
        },
    )


def held_out_samples(model, tokenizer, args: argparse.Namespace) -> list[dict]:
    """Greedy answers to a few held-out just-eval prompts: did the model learn to stop?"""
    if args.samples <= 0:
        return []
    instructions = [r["instruction"] for r in justeval.records(args.just_eval)[: args.samples]]
    model.eval()
    cap = 160
    answers = common.greedy_answers(model, tokenizer, instructions, max_new_tokens=cap, batch_size=args.samples)
    samples = []
    for instruction, answer in zip(instructions, answers, strict=True):
        # re-tokenising the text is within a token or two of what was generated
        stopped = len(tokenizer(answer, add_special_tokens=False)["input_ids"]) < cap - 2
        print(f"--- {instruction[:70]!r} (stopped before {cap} tokens: {stopped})\n{answer[:400]}")
        samples.append({"instruction": instruction, "answer": answer, "stopped": stopped})
    return samples


if __name__ == "__main__":
    common.run_main(main)
