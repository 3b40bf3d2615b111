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
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from compute.core import adapters, sources
from compute.core.artifact.branching_samples import branching_attrs, read_branching
from compute.core.artifact.reader import Artifact
from compute.core.config import SideConfig
from compute.core.mismatch import Mismatch
from compute.core.packaged import PackageError
from compute.core.statistics import SIDE_NAMES
from compute.engine.model import SideError, SideModel, check_adapter, load_plain


def sample_positions(artifact: Artifact, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """(example, t) pairs: the first and last position of several examples, then random ones."""
    offsets = artifact.read("examples/offsets")
    lengths = np.diff(offsets)
    nonempty = [e for e in range(artifact.n_examples) if lengths[e] > 0]
    rng = random.Random(seed)
    chosen: dict[tuple[int, int], None] = {}  # distinct positions, in the order drawn
    for e in rng.sample(nonempty, min(len(nonempty), max(1, n // 3))):
        chosen.update({(e, 0): None, (e, int(lengths[e]) - 1): None})
    while len(chosen) < min(n, int(lengths.sum())):  # n distinct ones, or every position of a smaller artifact
        e = rng.choice(nonempty)
        chosen[(e, rng.randrange(int(lengths[e])))] = None
    return list(chosen)[:n]


def side_config(
    artifact: Artifact, side: str, device: str = "auto", path: str | None = None, adapter: str | None = None
) -> SideConfig:
    """How to load the model a side of the artifact ran (its template is not needed: context ids are stored).

    `path` points at a copy of the base model on this machine (a model folder, or a GGUF file) instead of the
    source the artifact records; the side's adapter still applies on top of it. `adapter` points at the side's
    adapter folder where it is no longer at the place the artifact records."""
    attrs = artifact.side_attrs[side]
    source = sources.read_back(attrs)
    if path:
        local = Path(path)
        source = {"model": str(local.parent), "gguf_file": local.name} if local.is_file() else {"model": path}
    return SideConfig(
        **source,
        dtype=str(attrs["dtype"]),
        device=device,
        adapter=_adapter(artifact, side, adapter),
        adapter_revision=attrs.get("adapter_revision"),
    )


def _adapter(artifact: Artifact, side: str, given: str | None) -> str | None:
    """The side's adapter: a local one where `given` says, else at its recorded path relative to the artifact's
    folder (never the current directory), and with the content the artifact's adapter_sha256 records; a hub id is
    kept as it is."""
    attrs = artifact.side_attrs[side]
    recorded, digest = attrs.get("adapter"), attrs.get("adapter_sha256")
    folder_of_artifact = artifact.path.parent.resolve()
    point = f"point check at it with --adapter {side}=PATH"
    if recorded is None:
        if given is not None:
            raise SideError(f"--adapter {side}={given}: the artifact's {side} side ran without an adapter")
        return None
    if given is not None:
        folder, where = Path(given).resolve(), f"--adapter {side}={given}"
        if not folder.is_dir():
            raise SideError(f"[{side}] {where}: no adapter folder at {folder}")
    else:
        folder, where = folder_of_artifact / str(recorded), f"adapter {recorded}"
        if not folder.is_dir():
            if digest is None and not Path(str(recorded)).exists() and not _looks_local(str(recorded)):
                return str(recorded)  # a hub id (files before adapter_sha256 record local adapters without it)
            raise SideError(
                f"[{side}] adapter {recorded} (relative to the artifact's folder {folder_of_artifact}) is not there; "
                f"{point}"
            )
    if (problem := adapters.problem(folder)) is not None:
        raise SideError(f"[{side}] {where}: {problem}")
    if digest is not None and adapters.content_hash(folder) != digest:
        raise SideError(
            f"[{side}] {where}: the adapter in {folder} is not the one the run used (its content hash differs from "
            f"the artifact's adapter_sha256 {str(digest)[:12]}...); {point}"
        )
    return str(folder.resolve())


def _looks_local(recorded: str) -> bool:
    """A recorded path, not a hub id ("org/name" or "name")."""
    return recorded.startswith((".", "/", "~")) or recorded.count("/") > 1


def load_side_models(
    artifact: Artifact,
    device: str = "auto",
    paths: dict[str, str] | None = None,
    adapter_paths: dict[str, str] | None = None,
) -> dict[str, SideModel]:
    """Each side's model, loaded plainly; a model both sides ran (adapter included) is loaded once.

    `paths`: side -> a local copy of its base model; `adapter_paths`: side -> its adapter's folder."""
    paths, adapter_paths = paths or {}, adapter_paths or {}
    configs = {
        side: side_config(artifact, side, device, paths.get(side), adapter_paths.get(side)) for side in SIDE_NAMES
    }
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
    for e, t in tqdm(positions, desc="check", unit="position"):
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


def nucleus_step(
    logits: torch.Tensor, token: int, temperature: float, top_p: float, shift: int = 0
) -> tuple[float, float] | None:
    """The BF paper's numbers for one sampled step, the slow way: temperature, then the most likely tokens
    one by one until they hold top_p (and `shift` more or fewer), renormalised; (entropy, log-prob of `token`),
    None if `token` is not kept."""
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    order = torch.argsort(probs, descending=True).tolist()
    kept, mass = [], 0.0
    for i in order:
        kept.append(i)
        mass += probs[i].item()
        if mass >= top_p:
            break
    kept = order[: max(1, len(kept) + shift)]
    if token not in kept:
        return None
    nucleus = probs[kept] / probs[kept].sum()
    entropy = -(nucleus * nucleus.log()).sum().item()
    return entropy, float(nucleus[kept.index(token)].log().item())


def sample_steps(artifact: Artifact, n: int, seed: int = 0) -> list[tuple[str, int, int, int]]:
    """(side, example, sample, step) of n stored sampled steps: the first step of some samples, then random ones."""
    rng = random.Random(seed)
    steps: list[tuple[str, int, int, int]] = []
    for side in SIDE_NAMES:
        samples = read_branching(artifact, side)
        nonempty = [(e, s) for e, x in enumerate(samples) for s in range(x.n) if x.offsets[s + 1] > x.offsets[s]]
        for i, (e, s) in enumerate(rng.sample(nonempty, min(len(nonempty), n // 2))):
            length = int(samples[e].offsets[s + 1] - samples[e].offsets[s])
            steps.append((side, e, s, 0 if i % 2 == 0 else rng.randrange(length)))
    return steps


@torch.inference_mode()
def verify_branching(
    artifact: Artifact, steps: list[tuple[str, int, int, int]], atol: float = 1e-3, models=None
) -> list[Mismatch]:
    """Re-derive stored sampled steps (/branching) with one full forward each; [] when all agree."""
    if not steps:
        return []
    models = models or load_side_models(artifact)
    settings = {side: branching_attrs(artifact, side) for side in SIDE_NAMES}
    samples = {side: read_branching(artifact, side) for side in SIDE_NAMES}
    mismatches: list[Mismatch] = []
    for side, e, s, t in tqdm(steps, desc="check sampled steps", unit="step"):
        sample = samples[side][e]
        rows = slice(int(sample.offsets[s]), int(sample.offsets[s + 1]))
        tokens, entropy, logprob = sample.token_id[rows], sample.entropy[rows], sample.logprob[rows]
        model = models[side]
        ids = torch.tensor(np.concatenate([artifact.context_ids(side, e), tokens[:t]]), device=model.device)[None]
        logits = model.own_logits(ids)[0, -1]
        temperature, top_p = settings[side]["temperature"], settings[side]["top_p"]
        # The nucleus's last token may differ by one where float32 noise moves the mass across top_p.
        candidates = [nucleus_step(logits, int(tokens[t]), temperature, top_p, shift) for shift in BOUNDARY_SHIFTS]
        stored = (float(entropy[t]), float(logprob[t]))
        if any(c is not None and np.allclose(stored, c, atol=atol, rtol=0) for c in candidates):
            continue
        label = f"branching/{side} sample {s}"
        expected = candidates[0]
        if expected is None:
            mismatches.append(Mismatch(e, t, f"{label} token", int(tokens[t]), "outside the top-p nucleus"))
            continue
        for name, held, value in zip(("entropy", "logprob"), stored, expected, strict=True):
            if not np.isclose(held, value, atol=atol, rtol=0):
                mismatches.append(Mismatch(e, t, f"{label} {name}", held, value))
    return mismatches


BOUNDARY_SHIFTS = (0, -1, 1)  # the exact nucleus first, then one token fewer or more
