"""DPO stage: TRL's DPOTrainer on the SFT adapter, with the SFT adapter as the reference.

The pairs come from `python -m compute.train.pairs` (chosen = Llama-2-7b-chat's
answer, rejected = the base model's own greedy answer). TRL keeps one base
model and switches between the trained adapter and a frozen copy of the SFT
adapter ("ref"), so the reference costs no second model.

    python -m compute.train.dpo --pairs data/dpo-pairs.jsonl --max-pairs 64
"""

from __future__ import annotations

import argparse
from pathlib import Path

from compute.cli import positive_int
from compute.train import common


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.stage_parser(__doc__, "dpo")
    parser.add_argument("--adapter", type=Path, default=common.ADAPTERS / "gemma-270m-sft", help="the SFT adapter")
    parser.add_argument("--pairs", type=Path, default=Path("data/dpo-pairs.jsonl"))
    parser.add_argument("--max-pairs", type=positive_int, default=64, help="pairs to train on (the file's first ones)")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--grad-accum", type=positive_int, default=4)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-length", type=positive_int, default=384, help="prompt + answer tokens per sequence")
    return common.parse_stage_args(parser, argv)


def load_pairs(path: Path, limit: int) -> list[dict]:
    pairs = common.read_jsonl(path)[:limit]
    for number, pair in enumerate(pairs, 1):
        missing = {"prompt", "chosen", "rejected"} - set(pair)
        if missing:
            raise common.TrainingError(f"--pairs: {path} line {number} lacks {', '.join(sorted(missing))}")
    if not pairs:
        raise common.TrainingError(f"--pairs: {path} has no pairs")
    return [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.require_adapter(args.adapter)
    common.set_threads()
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    pairs = load_pairs(args.pairs, args.max_pairs)
    folder = common.base_folder(args.base)
    tokenizer = common.load_tokenizer(folder)
    model = common.load_model(folder, adapter=args.adapter)
    config = DPOConfig(
        **common.common_training_args(args),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        beta=args.beta,
        max_length=args.max_length,
    )
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        callbacks=common.training_callbacks(args.max_minutes),
    )
    seconds = common.train_timed(trainer)
    history = trainer.state.log_history
    log = {
        "stage": "dpo",
        "pairs": len(pairs),
        "steps": trainer.state.global_step,
        "train_seconds": round(seconds),
        "loss": common.curve(history, "loss"),
        "margin": common.curve(history, "rewards/margins"),
        "accuracy": common.curve(history, "rewards/accuracies"),
    }
    print(f"DPO: {log['steps']} steps, {len(pairs)} pairs, {seconds:.0f}s, loss {common.ends(log['loss'], 'loss')}")
    common.save_adapter(trainer.model, tokenizer, args, log)


if __name__ == "__main__":
    common.run_main(main)
