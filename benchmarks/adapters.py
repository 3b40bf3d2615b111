"""Peak memory of a base-vs-adapter pair: the base loaded once with the adapter switched per side, vs two copies.

    python benchmarks/adapters.py [--layers 8] [--threads 1]

A random Llama (~100M parameters at the defaults) and a random LoRA on it are
saved to a temporary folder. Each case then runs in a fresh process, which
loads what the case needs through compute.engine.model, scores one short sequence
on each side (backbone + LM head on every row) and reports its peak RSS
(VmHWM). Weights are read from the safetensors file on first use, so the
peak is taken after scoring, not just after loading.

- import: the libraries only (the floor every case shares);
- base: the base model alone, one side;
- shared: base and base + adapter as this project loads them (one copy, adapter switched per call);
- two copies: a second copy of the base carrying the adapter (what loading each side separately costs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


CASES = ("import", "base", "shared", "two copies")
BATCH, LENGTH = 1, 128  # small, so that the weights dominate the peak


def peak_rss_mib() -> float:
    """This process's peak resident set (Linux VmHWM; ru_maxrss would carry over the parent's peak through exec)."""
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024


def save_models(folder: Path, layers: int) -> tuple[Path, Path, int]:
    """A random Llama and a random LoRA (A and B both random, so the adapter changes the outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=layers,
        num_attention_heads=12,
        num_key_value_heads=12,
        max_position_embeddings=1024,
    )
    model = LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder / "base")
    lora = LoraConfig(
        r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    get_peft_model(model, lora).save_pretrained(folder / "adapter")
    return folder / "base", folder / "adapter", params


def measure(case: str, base: Path, adapter: Path) -> dict:
    """One case in this process: peak RSS after scoring each side once, and the scoring time."""
    import torch

    from compute.core.config import SideConfig
    from compute.engine.model import SideModel, add_adapter, load_side_models, load_weights

    plain = SideConfig(model=str(base), device="cpu", dtype="float32")
    tuned = SideConfig(model=str(base), device="cpu", dtype="float32", adapter=str(adapter))
    if case == "import":
        models: dict[str, SideModel] = {}
    elif case == "base":
        models = load_side_models({"base": plain})
    elif case == "shared":
        models = load_side_models({"aligned": tuned, "base": plain})
    else:
        copy = load_weights("aligned", tuned)
        add_adapter(copy, "aligned", "aligned", tuned)
        models = {"aligned": SideModel(copy, "aligned"), "base": SideModel(load_weights("base", plain))}
    ids = torch.randint(3, 32000, (BATCH, LENGTH), generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    for model in models.values():
        model.logits(model.hidden_states(ids, torch.ones_like(ids), use_cache=False))
    return {"peak": peak_rss_mib(), "seconds": time.perf_counter() - started}


def run_case(case: str, base: Path, adapter: Path, threads: int) -> dict:
    command = [sys.executable, __file__, "--case", case, "--base", str(base), "--adapter", str(adapter)]
    command += ["--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8, help="decoder layers (default 8: ~106M parameters)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each case (default 1)")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--base", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--adapter", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.case, args.base, args.adapter)))
        return

    with tempfile.TemporaryDirectory() as folder:
        base, adapter, params = save_models(Path(folder), args.layers)
        adapter_mib = sum(f.stat().st_size for f in adapter.iterdir()) / 2**20
        results = {case: run_case(case, base, adapter, args.threads) for case in CASES}
    floor = results["import"]["peak"]
    print(
        f"random Llama, {params / 1e6:.0f}M parameters ({params * 4 / 2**20:.0f} MiB in float32), "
        f"LoRA r 16 on q/k/v/o ({adapter_mib:.1f} MiB); CPU, {args.threads} thread(s); "
        f"scoring: {BATCH} x {LENGTH} tokens per side"
    )
    print(f"\n| {'case':<10} | peak RSS (MiB) | above import (MiB) | scoring (s) |")
    print(f"|{'-' * 12}|{'-' * 15}:|{'-' * 19}:|{'-' * 12}:|")
    for case, r in results.items():
        print(f"| {case:<10} | {r['peak']:>14.0f} | {r['peak'] - floor:>18.0f} | {r['seconds']:>11.2f} |")
    above = {case: results[case]["peak"] - floor for case in ("base", "shared", "two copies")}
    print(
        f"\nabove import: shared / base = {above['shared'] / above['base']:.2f}, "
        f"two copies / base = {above['two copies'] / above['base']:.2f}, "
        f"two copies / shared = {above['two copies'] / above['shared']:.2f}; "
        f"whole process: two copies / shared = {results['two copies']['peak'] / results['shared']['peak']:.2f}"
    )


if __name__ == "__main__":
    main()
