"""Re-score sampled positions of an artifact the naive way and compare every stored number.

For a position t of example e: the side's stored context ids, then o_<t, one
full forward pass of the model (no batching, no padding, no cache, the model's
own logits), log-softmax in float32 over the whole vocabulary. This is the
slow algorithm the scorer replaces, and it is how an artifact is checked.

Each side's model is loaded the plain way: a side with an adapter gets its
own copy of the base with that one adapter (merged into float32 weights),
not the shared base with adapters switched per call that the run uses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from compute.artifact import SIDE_NAMES, Artifact
from compute.config import SideConfig
from compute.model import SideError, SideModel, check_adapter, load_plain
from compute.packaged import PackageError


@dataclass
class Mismatch:
    example: int
    t: int
    field: str
    stored: object
    expected: object

    def __str__(self) -> str:
        return f"example {self.example}, t {self.t}: {self.field} stored {self.stored}, naive {self.expected}"


def sample_positions(artifact: Artifact, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """(example, t) pairs: the first and last position of several examples, then random ones."""
    offsets = artifact.read("examples/offsets")
    lengths = np.diff(offsets)
    nonempty = [e for e in range(artifact.n_examples) if lengths[e] > 0]
    rng = random.Random(seed)
    chosen: list[tuple[int, int]] = []
    for e in rng.sample(nonempty, min(len(nonempty), max(1, n // 3))):
        chosen += [(e, 0), (e, int(lengths[e]) - 1)]
    while len(chosen) < n and nonempty:
        e = rng.choice(nonempty)
        chosen.append((e, rng.randrange(int(lengths[e]))))
    return list(dict.fromkeys(chosen))[:n]


def side_config(artifact: Artifact, side: str, device: str = "auto", path: str | None = None) -> SideConfig:
    """How to load the model a side of the artifact ran (its template is not needed: context ids are stored).

    `path` points at a copy of the base model on this machine (a model folder, or a GGUF file) instead of the
    source the artifact records; the side's adapter still applies on top of it."""
    attrs = artifact.side_attrs[side]
    source = {"model": str(attrs["model"]), "gguf_file": attrs.get("gguf_file"), "revision": attrs.get("revision")}
    if path:
        local = Path(path)
        source = {"model": str(local.parent), "gguf_file": local.name} if local.is_file() else {"model": path}
    return SideConfig(
        **source,
        dtype=str(attrs["dtype"]),
        device=device,
        adapter=_adapter(artifact, attrs.get("adapter")),
        adapter_revision=attrs.get("adapter_revision"),
    )


def _adapter(artifact: Artifact, recorded: object) -> str | None:
    """A local adapter is recorded relative to the artifact's folder; a hub id is kept as it is."""
    if recorded is None:
        return None
    beside = artifact.path.parent / str(recorded)
    return str(beside.resolve()) if beside.is_dir() else str(recorded)


def load_side_models(
    artifact: Artifact, device: str = "auto", paths: dict[str, str] | None = None
) -> dict[str, SideModel]:
    """Each side's model, loaded plainly; a model both sides ran (adapter included) is loaded once.

    `paths`: side -> a local copy of its base model."""
    paths = paths or {}
    configs = {side: side_config(artifact, side, device, paths.get(side)) for side in SIDE_NAMES}
    loaded: dict[tuple, SideModel] = {}
    for side, config in configs.items():
        if config.model_key() not in loaded:
            if config.adapter:
                check_adapter(side, config)  # before the base, and without the hint: --model replaces the base only
            try:
                loaded[config.model_key()] = load_plain(side, config)
            except (SideError, PackageError) as err:
                named = str(err) if isinstance(err, SideError) else f"[{side}] {err}"
                raise SideError(f"{named} (on this machine point check at it with --model {side}=PATH)") from None
    return {side: loaded[config.model_key()] for side, config in configs.items()}


def naive_logprobs(model: SideModel, context: np.ndarray, answer: np.ndarray, t: int) -> np.ndarray:
    """log-softmax of the model's own logits for position t, float64 over the whole vocabulary."""
    ids = torch.tensor(np.concatenate([context, answer[:t]]), dtype=torch.long, device=model.device)[None]
    return torch.log_softmax(model.own_logits(ids)[0, -1].double(), dim=-1).cpu().numpy()


def verify(artifact: Artifact, positions: list[tuple[int, int]], atol: float = 1e-3, models=None) -> list[Mismatch]:
    """Compare every registered statistic the file holds at `positions` with naive re-scoring; [] when all agree."""
    models = models or load_side_models(artifact)
    offsets = artifact.read("examples/offsets")
    k = artifact.top_k
    mismatches: list[Mismatch] = []
    for e, t in positions:
        row = int(offsets[e]) + t
        answer = artifact.read("positions/token_id", slice(int(offsets[e]), int(offsets[e + 1])))
        target = int(answer[t])
        logp = {}
        for side in SIDE_NAMES:
            logp[side] = naive_logprobs(models[side], artifact.context_ids(side, e), answer, t)
        for dataset, stat, side in artifact.statistics():
            stored = artifact.read(dataset, slice(row, row + 1))[0]
            expected = np.asarray(stat.naive(logp, target, k, side))
            if not stat.agrees(stored, expected, logp[side or "aligned"], atol):
                mismatches.append(Mismatch(e, t, dataset, stored, expected))
    return mismatches
