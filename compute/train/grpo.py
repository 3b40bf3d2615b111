"""GRPO stage (RLVR): TRL's GRPOTrainer on a saved adapter, rewarded by the arithmetic judge.

Each step samples --generations answers to one arithmetic-train problem
(temperature 0.7, up to --max-completion tokens); the reward is 1 when the
first number of the answer is right, else 0. Greedy accuracy on the first
--eval arithmetic-test problems is measured before and after training.

    python -m compute.train.grpo --adapter artifacts/adapters/gemma-270m-sft --steps 60
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from compute.cli import positive_int
from compute.tasks import arithmetic
from compute.train import common


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.stage_parser(__doc__, "grpo")
    parser.add_argument(
        "--adapter", type=Path, default=common.ADAPTERS / "gemma-270m-sft", help="adapter to start from"
    )
    parser.add_argument("--steps", type=positive_int, default=60, help="optimizer steps, one problem each")
    parser.add_argument("--generations", type=positive_int, default=8, help="sampled answers per problem")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-completion", type=positive_int, default=8, help="tokens per sampled answer")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--eval", type=int, default=100, help="arithmetic-test problems for greedy accuracy")
    parser.add_argument("--train-file", type=Path, default=Path("data/arithmetic-train.jsonl"))
    parser.add_argument("--test-file", type=Path, default=Path("data/arithmetic-test.jsonl"))
    return common.parse_stage_args(parser, argv)


def judge_reward(completions: list[str], reference: list[str], **_) -> list[float]:
    """1.0 where the first number of the completion equals the problem's reference."""
    return [float(arithmetic.is_correct(c, r)) for c, r in zip(completions, reference, strict=True)]


def accuracy(model, tokenizer, problems: list[dict], max_new_tokens: int) -> float:
    model.eval()
    answers = common.greedy_answers(model, tokenizer, [p["instruction"] for p in problems], max_new_tokens, 16)
    return sum(judge_reward(answers, [p["reference"] for p in problems])) / len(problems)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.require_adapter(args.adapter)
    common.set_threads()
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    train = [
        {"prompt": common.prompt(p["instruction"]), "reference": p["reference"]}
        for p in common.read_jsonl(args.train_file)
    ]
    test = common.read_jsonl(args.test_file)[: args.eval]
    folder = common.base_folder(args.base)
    tokenizer = common.load_tokenizer(folder)
    model = common.load_model(folder, adapter=args.adapter)
    start = time.monotonic()
    before = accuracy(model, tokenizer, test, args.max_completion)
    print(f"greedy accuracy on {len(test)} test problems before: {before:.3f} ({time.monotonic() - start:.0f}s)")
    config = GRPOConfig(
        **common.common_training_args(args),
        max_steps=args.steps,
        per_device_train_batch_size=args.generations,
        num_generations=args.generations,
        temperature=args.temperature,
        max_completion_length=args.max_completion,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=judge_reward,
        args=config,
        train_dataset=Dataset.from_list(train),
        processing_class=tokenizer,
        callbacks=common.training_callbacks(args.max_minutes),
    )
    seconds = common.train_timed(trainer)
    after = accuracy(trainer.model, tokenizer, test, args.max_completion)
    print(f"greedy accuracy on {len(test)} test problems after: {after:.3f}")
    rewards = common.curve(trainer.state.log_history, "reward")
    print(f"GRPO: {trainer.state.global_step} steps, {seconds:.0f}s, reward {common.ends(rewards, 'reward')}")
    log = {
        "stage": "grpo",
        "steps": trainer.state.global_step,
        "train_seconds": round(seconds),
        "reward": rewards,
        "loss": common.curve(trainer.state.log_history, "loss"),
        "test_accuracy": {"problems": len(test), "before": before, "after": after},
    }
    common.save_adapter(trainer.model, tokenizer, args, log)


if __name__ == "__main__":
    common.run_main(main)
