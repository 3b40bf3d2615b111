"""A side's model behind a narrow interface, and loading weights that sides share.

Sides on the same base weights (one model under two templates, a base and the
base with an adapter, two adapters on one base) share one loaded copy: the
base is wrapped once in a PeftModel holding every adapter by name, and each
call a side makes switches to its own adapter (or to none) first. Peak memory
is one model plus its adapters.

Calls go to the transformers model inside the PeftModel (the adapter layers
sit in it), never to `PeftModel.base_model`, which is peft's tuner wrapper.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from peft import PeftConfig, PeftModel
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, GenerationConfig

from compute.core import sources
from compute.core.config import SideConfig
from compute.core.errors import UserError, one_line

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class SideError(UserError):
    """A side that cannot be loaded or used; one line naming the side and the cause."""


@dataclass
class Weights:
    """One loaded copy of a model; with adapters, the PeftModel that holds them by name."""

    lm: Any  # the transformers causal LM (inside a PeftModel: with the adapter layers in it)
    device: torch.device  # where inputs go
    peft: PeftModel | None = None

    @contextmanager
    def switched_to(self, adapter: str | None) -> Iterator[None]:
        """Run the enclosed calls with `adapter` active, or with every adapter off when it is None."""
        if self.peft is None:
            yield
        elif adapter is None:
            with self.peft.disable_adapter():
                yield
        else:
            self.peft.set_adapter(adapter, inference_mode=True)
            yield


class SideModel:
    """What scoring, generation and checking ask of one side's model, and nothing more."""

    def __init__(self, weights: Weights, adapter: str | None = None):
        self.weights = weights
        self.adapter = adapter  # the adapter's name inside weights.peft, None for the bare base weights

    @property
    def _lm(self) -> Any:
        return self.weights.lm

    @property
    def device(self) -> torch.device:
        return self.weights.device

    @property
    def architecture(self) -> str:
        return type(self._lm).__name__

    @property
    def dtype_name(self) -> str:
        return str(self._lm.dtype).removeprefix("torch.")

    @property
    def vocab_size(self) -> int:
        return self._lm.get_output_embeddings().out_features

    @property
    def eos_ids(self) -> list[int]:
        """The generation config's EOS ids."""
        ids = self._lm.generation_config.eos_token_id
        return [] if ids is None else [ids] if isinstance(ids, int) else list(ids)

    @property
    def context_window(self) -> int | None:
        """The longest sequence the model's positions cover, when its config says."""
        return getattr(self._lm.config, "max_position_embeddings", None)

    @property
    def has_sliding_window(self) -> bool:
        config = self._lm.config
        layer_types = getattr(config, "layer_types", None)
        if layer_types:
            return any("sliding" in kind for kind in layer_types)
        return getattr(config, "sliding_window", None) is not None

    @torch.inference_mode()
    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **extra
    ) -> torch.Tensor:
        """The backbone's last hidden states (batch, length, hidden).

        extra: past_key_values, position_ids, use_cache, passed to the backbone's forward.
        """
        with self.weights.switched_to(self.adapter):
            return self._lm.base_model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    @torch.inference_mode()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head on hidden states, with the final soft-capping some models apply.

        The hidden states move to the head's device first (with a device_map the last layer may sit elsewhere).
        """
        with self.weights.switched_to(self.adapter):
            head = self._lm.get_output_embeddings()
            logits = head(hidden.to(head.weight.device))
        cap = getattr(self._lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    @torch.inference_mode()
    def own_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The model's own forward pass, logits for every position: what the backbone + head split must equal."""
        with self.weights.switched_to(self.adapter):
            return self._lm(input_ids=input_ids).logits

    @torch.inference_mode()
    def prefix_cache(self, ids: list[int]) -> Any:
        """The KV cache of one sequence (a batch of one)."""
        with self.weights.switched_to(self.adapter):
            output = self._lm.base_model(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
        return output.past_key_values

    @torch.inference_mode()
    def extend(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, cache: Any
    ) -> tuple[torch.Tensor, Any]:
        """Run new tokens on top of a KV cache (None: start one); the last hidden state of each row and the cache.

        attention_mask covers the cached tokens and the new ones; position_ids the new ones only.
        """
        with self.weights.switched_to(self.adapter):
            output = self._lm.base_model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                position_ids=position_ids.to(self.device),
                past_key_values=cache,
                use_cache=True,
            )
        return output.last_hidden_state[:, -1], output.past_key_values

    @torch.inference_mode()
    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, config: GenerationConfig, **extra
    ) -> torch.Tensor:
        """transformers' generate (extra: tokenizer for stop strings, past_key_values); prompt + new ids."""
        with self.weights.switched_to(self.adapter):
            return self._lm.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                generation_config=config,
                **extra,
            )


def check_device(name: str, cfg: SideConfig) -> None:
    """Refuse, before anything loads, a device this machine does not have."""
    if cfg.device_map is not None or cfg.device == "auto":
        return
    try:
        device = torch.device(cfg.device)
    except RuntimeError:
        raise SideError(f"[{name}] device {cfg.device!r} is not a device name (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cpu":
        return
    backend = getattr(torch, device.type, None)
    count = backend.device_count() if backend is not None and hasattr(backend, "device_count") else 0
    where = f"[{name}] device {cfg.device!r}"
    if count == 0:
        raise SideError(f'{where}: no {device.type} device on this machine (use "auto" or "cpu")')
    if device.index is not None and device.index >= count:
        raise SideError(f"{where}: this machine has {count} {device.type} devices, 0-{count - 1}")


def pick_device(requested: str) -> torch.device:
    """auto: this process's GPU (LOCAL_RANK under torchrun) when there is one, else the CPU."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[requested]


def load_weights(name: str, cfg: SideConfig) -> Weights:
    """The base model of a side (no adapter) in eval mode.

    With a device_map accelerate places the layers (possibly over several GPUs) and inputs
    go to the device of the input embeddings; otherwise the whole model moves to one device.
    """
    if cfg.device_map is not None and int(os.environ.get("LOCAL_WORLD_SIZE", 1)) > 1:
        raise SideError(
            f"[{name}] device_map spreads one model over this node's GPUs: run one process per node "
            "(torchrun --nproc-per-node 1), not one per GPU"
        )
    spread = cfg.device_map is not None
    device = pick_device("auto" if spread else cfg.device)  # with a device_map only its type counts (for dtype)
    dtype = pick_dtype(cfg.dtype, device)
    fields = sources.fields_of(cfg)
    kind = sources.kind_of(fields)
    location, kwargs = kind.location(fields)
    if spread:
        kwargs["device_map"] = cfg.device_map
    try:
        lm = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **kwargs)
    except (OSError, ValueError) as err:
        raise SideError(f"[{name}] cannot load the model {cfg.model} ({kind.name}): {one_line(err)}") from None
    if spread:
        device = lm.get_input_embeddings().weight.device
    else:
        lm.to(device)
    return Weights(lm.eval(), device)


def check_adapter(name: str, cfg: SideConfig) -> None:
    """Read the adapter's config (fast, before any model loads): it must exist and change weights in place."""
    try:
        adapter_config = PeftConfig.from_pretrained(cfg.adapter, revision=cfg.adapter_revision)
    except (OSError, ValueError) as err:
        raise SideError(f"[{name}] cannot load the adapter {cfg.adapter}: {one_line(err)}") from None
    if adapter_config.is_prompt_learning:
        raise SideError(
            f"[{name}] adapter {cfg.adapter} is a {adapter_config.peft_type.value} adapter (virtual tokens); "
            "only adapters that change the model's layers (LoRA and the like) are supported"
        )


def add_adapter(weights: Weights, adapter_name: str, name: str, cfg: SideConfig) -> None:
    """Load the side's adapter into the shared weights under `adapter_name` (wrapping them in a PeftModel first)."""
    try:
        if weights.peft is None:
            weights.peft = PeftModel.from_pretrained(
                weights.lm, cfg.adapter, adapter_name=adapter_name, revision=cfg.adapter_revision
            )
            weights.lm = weights.peft.get_base_model()
        else:
            weights.peft.load_adapter(cfg.adapter, adapter_name=adapter_name, revision=cfg.adapter_revision)
    except (OSError, ValueError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        raise SideError(f"[{name}] cannot apply the adapter {cfg.adapter} to {cfg.model}: {one_line(err)}") from None
    weights.peft.eval()


def load_side_models(configs: dict[str, SideConfig]) -> dict[str, SideModel]:
    """Each side's model; the base weights are loaded once per weights_key, adapters once per (base, adapter)."""
    for name, cfg in configs.items():
        if cfg.adapter:
            check_adapter(name, cfg)
    weights: dict[tuple, Weights] = {}
    adapter_names: dict[tuple, str] = {}
    models = {}
    for name, cfg in configs.items():
        key = cfg.weights_key()
        if key not in weights:
            weights[key] = load_weights(name, cfg)
        adapter = None
        if cfg.adapter:
            adapter_key = (key, cfg.adapter, cfg.adapter_revision)
            if adapter_key not in adapter_names:
                adapter_names[adapter_key] = name  # the first side that uses it names it
                add_adapter(weights[key], name, name, cfg)
            adapter = adapter_names[adapter_key]
        models[name] = SideModel(weights[key], adapter)
    return models


def load_plain(name: str, cfg: SideConfig) -> SideModel:
    """A side's model loaded the plain way, for checking: its own copy of the base with its one adapter.

    In float32 the adapter is merged into the weights (merge_and_unload), so the check does not share peft's
    per-call adapter path with the run; in 16-bit it stays unmerged: merging rounds W + BA to 16 bits, which the
    run never does (on the tests' tiny Llama, log-probs moved by up to 0.07 in bfloat16, 5e-6 in float32).
    """
    weights = load_weights(name, cfg)
    if cfg.adapter:
        add_adapter(weights, "plain", name, cfg)
        if weights.lm.dtype == torch.float32:
            return SideModel(Weights(weights.peft.merge_and_unload().eval(), weights.device))
        return SideModel(weights, "plain")
    return SideModel(weights)
