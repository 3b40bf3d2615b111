"""Time teacher-forced scoring and generation: one model, the same sequences, one table.

    python benchmarks/scoring.py [--shape tiny|small|llama-7b | --model DIR] [--answers 8]
        [--answer-len 256] [--prompt-len 160] [--batch-size 4] [--device auto] [--dtype auto] [--threads N]

Scoring, over --answers random (prompt, answer) sequences, one model playing both sides:
  (a) AlignTDS's algorithm: one full forward over prompt + o_<t per answer position and side;
      a sample of positions is timed and the mean is extrapolated to every position;
  (b) this project's scorer, compute.engine.score.score_batch, batch by batch;
  (c) a bare forward: backbone hidden states + LM head on the answer rows, no statistics.
Generation (EOS off, so every answer is --gen-tokens long): compute.engine.generate.generate_answers
over batches of --batch-size against transformers' generate at batch 1.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from compute.engine.generate import generate_answers
from compute.engine.model import SideModel, Weights, pick_device, pick_dtype
from compute.engine.score import CHUNK_ELEMENTS, ScoreItem, answer_hidden_states, score_batch
from compute.engine.sides import Side

ROOT = Path(__file__).resolve().parent.parent

SHAPES = {  # LlamaConfig fields; llama-7b is Llama-2-7B's shape
    "tiny": dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4, vocab_size=1000),
    "small": dict(
        hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8, vocab_size=32000
    ),
    "llama-7b": dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, vocab_size=32000
    ),
}
TOP_K = 10
SIDES = ("aligned", "base")
SCORER_MAX_RATIO, NAIVE_MIN_RATIO = 1.25, 100.0  # targets: (b)/(c) at most, (a)/(b) at least


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a local model directory (default: random weights of --shape)")
    p.add_argument("--shape", choices=sorted(SHAPES), default="small", help="random Llama shape (default small)")
    p.add_argument("--answers", type=int, default=8, help="sequences to score (default 8)")
    p.add_argument("--answer-len", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--naive-positions", type=int, default=6, help="positions timed for (a) (default 6)")
    p.add_argument("--gen-tokens", type=int, default=32, help="tokens per generated answer (default 32)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def build_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> Any:
    """The model in eval mode: loaded from --model, or random weights of --shape built on the device."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if args.model:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(device)
    else:
        config = LlamaConfig(**SHAPES[args.shape], max_position_embeddings=4096, rms_norm_eps=1e-5)
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                model = LlamaForCausalLM(config)
        finally:
            torch.set_default_dtype(default_dtype)
    model.generation_config.eos_token_id = None  # every answer runs to its full length
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], Any]) -> float:
    sync(device)
    started = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - started


def batches(items: list[ScoreItem], size: int) -> list[list[ScoreItem]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@torch.inference_mode()
def naive_position(model: Any, device: torch.device, item: ScoreItem, t: int) -> None:
    """AlignTDS: a full forward over context + o_<t for each side, statistics of the last row only."""
    ids = torch.tensor([item.contexts["aligned"] + item.answer[:t]], device=device)
    for _ in SIDES:
        logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
        logp.topk(TOP_K)
        (logp > logp[item.answer[t]]).sum()
        (logp.exp() * logp).sum()


@torch.inference_mode()
def bare_forward(model: SideModel, batch: list[ScoreItem]) -> None:
    """Backbone hidden states and LM head logits of the answer rows, in the scorer's chunks."""
    for side in SIDES:
        hidden = answer_hidden_states(model, batch, side)
        chunk = max(1, CHUNK_ELEMENTS // model.vocab_size)
        for start in range(0, len(hidden), chunk):
            model.logits(hidden[start : start + chunk])


def time_scoring(args: argparse.Namespace, model: Any, device: torch.device, items: list[ScoreItem]) -> dict:
    side_model = SideModel(Weights(model, device))
    models = {side: side_model for side in SIDES}
    bare_forward(side_model, items[:1])  # warm-up
    score_batch(models, items[:1], TOP_K)
    positions = sum(len(item.answer) for item in items)
    scorer = bare = 0.0
    for batch in batches(items, args.batch_size):  # alternated, so load from other processes hits both alike
        scorer += timed(device, lambda b=batch: score_batch(models, b, TOP_K))
        bare += timed(device, lambda b=batch: bare_forward(side_model, b))
    sample = [
        (i % len(items), round(i * (args.answer_len - 1) / max(1, args.naive_positions - 1)))
        for i in range(args.naive_positions)
    ]
    per_position = statistics.mean(
        timed(device, lambda e=e, t=t: naive_position(model, device, items[e], t)) for e, t in sample
    )
    return {"positions": positions, "naive": per_position * positions, "scorer": scorer, "bare": bare}


def stub_side(model: Any, device: torch.device) -> Side:
    """A Side for generate_answers: pad id 0, no EOS, no stop strings."""
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=None)
    return Side("aligned", None, tokenizer, SideModel(Weights(model, device)), [])  # type: ignore[arg-type]


@torch.inference_mode()
def time_generation(args: argparse.Namespace, model: Any, device: torch.device, items: list[ScoreItem]) -> dict:
    side = stub_side(model, device)
    contexts = [item.contexts["aligned"] for item in items]
    generate_answers(side, contexts[:1], 2, ())  # warm-up
    made = {"ours": 0, "plain": 0}

    def ours(batch: list[list[int]]) -> None:
        made["ours"] += sum(len(a) for a in generate_answers(side, batch, args.gen_tokens, ()))

    def plain(context: list[int]) -> None:
        ids = torch.tensor([context], device=device)
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=args.gen_tokens, pad_token_id=0
        )
        made["plain"] += out.shape[1] - ids.shape[1]

    seconds = {
        "ours": sum(timed(device, lambda b=b: ours(b)) for b in batches(contexts, args.batch_size)),
        "plain": sum(timed(device, lambda c=c: plain(c)) for c in contexts),
    }
    return {"tokens": made, "seconds": seconds}


def random_items(args: argparse.Namespace, vocab: int) -> list[ScoreItem]:
    generator = torch.Generator().manual_seed(args.seed)

    def ids(n: int) -> list[int]:
        return torch.randint(3, vocab, (n,), generator=generator).tolist()

    items = []
    for _ in range(args.answers):
        context = ids(args.prompt_len)
        items.append(ScoreItem({side: context for side in SIDES}, ids(args.answer_len)))
    return items


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    torch.manual_seed(args.seed)
    model = build_model(args, device, dtype)
    vocab = model.get_output_embeddings().out_features
    items = random_items(args, vocab)
    name = args.model or f"random Llama ({args.shape})"
    print(
        f"{name}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {dtype}, {device} "
        f"({torch.get_num_threads()} threads); {args.answers} answers of {args.answer_len} tokens after "
        f"{args.prompt_len}-token prompts, batch {args.batch_size}, both sides one model, top-k {TOP_K}"
    )
    s = time_scoring(args, model, device, items)
    g = time_generation(args, model, device, items)
    rows = [
        (
            f"(a) AlignTDS: full forward per position (extrapolated from {args.naive_positions})",
            s["positions"],
            s["naive"],
        ),
        ("(b) compute.engine.score.score_batch", s["positions"], s["scorer"]),
        ("(c) bare forward: backbone + LM head on answer rows", s["positions"], s["bare"]),
        (
            f"generate: compute.engine.generate.generate_answers, batch {args.batch_size}",
            g["tokens"]["ours"],
            g["seconds"]["ours"],
        ),
        ("generate: transformers generate, batch 1", g["tokens"]["plain"], g["seconds"]["plain"]),
    ]
    print(f"\n| {'what':<72} | {'tokens':>7} | {'seconds':>9} | {'tokens/s':>9} |")
    print(f"|{'-' * 74}|{'-' * 8}:|{'-' * 10}:|{'-' * 10}:|")
    for label, tokens, seconds in rows:
        print(f"| {label:<72} | {tokens:>7} | {seconds:>9.2f} | {tokens / seconds:>9.1f} |")
    scorer_ratio, naive_ratio = s["scorer"] / s["bare"], s["naive"] / s["scorer"]
    rates = {key: g["tokens"][key] / g["seconds"][key] for key in ("ours", "plain")}
    speed_up = rates["ours"] / rates["plain"]
    print(
        f"\n(b)/(c) = {scorer_ratio:.2f} (target at most {SCORER_MAX_RATIO}); "
        f"(a)/(b) = {naive_ratio:.0f} (target at least {NAIVE_MIN_RATIO:.0f}); "
        f"generation batched/batch-1 speed-up = {speed_up:.2f}"
    )


if __name__ == "__main__":
    main()
