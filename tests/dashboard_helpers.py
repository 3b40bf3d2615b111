"""Hand-built artifacts for the dashboard tests (small enough to check every number by hand)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compute.artifact import ExampleScores, RunMeta, SideContext, write_artifact  # noqa: E402

APP = ROOT / "dashboard" / "app.py"
TOP_K = 3
XSS = "<img src=x onerror=alert(1)>"
BOLD = "**bold**"
MATH = "$x$"
TOKENS = {
    1: "Sure",
    2: ",",
    3: " here",
    4: "\n",
    5: " 42",
    6: XSS,
    7: BOLD,
    8: MATH,
    9: " However",
    10: " world",
    100: "A",
    101: "B",
    102: "C",
}
CONTEXT_TEXT = "<s>[INST] Say hi *now* [/INST]"
CONTEXT = [0, 50, 51]  # 0, 50 and 51 have no text in the token table
TOP_PROBS = np.log(np.array([0.5, 0.3, 0.1], dtype=np.float32))


def side(name: str, token_ids: list[int], ranks: list[int], entropy: float) -> dict[str, np.ndarray]:
    """One side's statistics: the answer token first in its top-k when its rank is 0, else a filler first."""
    n = len(token_ids)
    topk = np.array([[t, 101, 102] if r == 0 else [100, 101, t] for t, r in zip(token_ids, ranks, strict=True)])
    return {
        f"sides/{name}/topk_ids": topk.reshape(n, TOP_K).astype(np.int32),
        f"sides/{name}/topk_logprobs": np.tile(TOP_PROBS, (n, 1)),
        f"sides/{name}/logprob": np.full(n, np.log(0.2), dtype=np.float32),
        f"sides/{name}/rank": np.array(ranks, dtype=np.int32),
        f"sides/{name}/entropy": np.full(n, entropy, dtype=np.float32),
    }


def example(
    index: int, id_: str, prompt: str, token_ids: list[int], base_ranks: list[int], kl: list[float], context: str = ""
) -> ExampleScores:
    """An example whose aligned side ranks every answer token first (entropy 1) and base side has entropy 2;
    `context` is the aligned side's stored context text (the base side stores none). JS is KL / 4."""
    return ExampleScores(
        index=index,
        id=id_,
        prompt=prompt,
        response="".join(TOKENS[t] for t in token_ids),
        token_ids=np.array(token_ids, dtype=np.int32),
        contexts={
            "aligned": SideContext(np.array(CONTEXT, dtype=np.int32), context),
            "base": SideContext(np.array(CONTEXT, dtype=np.int32)),
        },
        stats={
            "positions/kl": np.array(kl, dtype=np.float32),
            "positions/js": np.array(kl, dtype=np.float32) / 4,
            **side("aligned", token_ids, [0] * len(token_ids), 1.0),
            **side("base", token_ids, base_ranks, 2.0),
        },
    )


def write_run(path: Path, examples: list[ExampleScores], overwrite: bool = False) -> Path:
    """Write a run named after the file."""
    meta = RunMeta(
        name=path.stem,
        top_k=TOP_K,
        side_attrs={
            "aligned": {"model": "tiny/aligned", "template": "chat", "dtype": "float32"},
            "base": {"model": "tiny/base", "template": "plain", "dtype": "float32"},
        },
    )
    write_artifact(path, meta, examples, TOKENS, overwrite=overwrite)
    return path


# alpha: 9 positions; base ranks give unshifted 4, marginal 2, shifted 3.
ALPHA = [
    example(0, "ex-a", "Say hi *now*", [1, 2, 3, 4, 5], [5, 0, 1, 0, 3], [0.5, 0.1, 0.2, 0.0, 1.0], CONTEXT_TEXT),
    example(1, "ex-b", "Be literal", [6, 7, 8, 9], [0, 0, 2, 10], [0.0, 0.0, 0.3, 2.0], "<s>literal"),
]
# beta: ex-a has the same answer (ranks differ), ex-b a different one, ex-c only here.
BETA = [
    example(0, "ex-a", "Say hi *now*", [1, 2, 3, 4, 5], [0, 0, 1, 0, 0], [0.1] * 5),
    example(1, "ex-b", "Be literal", [10, 2], [4, 0], [0.5, 0.5]),
    example(2, "ex-c", "Only in beta", [10], [0], [0.0]),
]


def small_runs(directory: Path) -> list[Path]:
    """alpha.h5 and beta.h5 in `directory` (alpha stores its aligned context text, beta does not)."""
    directory.mkdir(parents=True, exist_ok=True)
    return [write_run(directory / "alpha.h5", ALPHA), write_run(directory / "beta.h5", BETA)]


def bad_files(directory: Path, good: Path) -> dict[str, Path]:
    """Broken copies of `good`: truncated, without `complete`, and claiming format_version 2."""
    truncated = directory / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    incomplete, newer = directory / "incomplete.h5", directory / "newer.h5"
    for path in (incomplete, newer):
        shutil.copy(good, path)
    with h5py.File(incomplete, "a") as f:
        del f.attrs["complete"]
    with h5py.File(newer, "a") as f:
        f.attrs["format_version"] = 2
    return {"truncated": truncated, "incomplete": incomplete, "newer": newer}


# What the format table alone requires (shared/design/artifact-format.md, "Layout"); everything else is optional.
OPTIONAL_DATASETS = ("examples/index", "positions/js")
OPTIONAL_SIDE_DATASETS = ("context_text", "context_text_offsets")
REQUIRED_ROOT_ATTRS = ("format", "format_version", "name", "top_k", "created_utc", "tool_version", "complete")


def strip_additions(source: Path, target: Path) -> Path:
    """A copy of `source` holding only what the v1 format table requires, as someone else's notebook would write
    it: every dataset and attribute re-written with plain h5py, no compression, none of the optional additions."""
    with h5py.File(source, "r") as old, h5py.File(target, "w") as new:
        for key in REQUIRED_ROOT_ATTRS:
            new.attrs[key] = old.attrs.get(key, "notebook")

        def copy(name: str, obj) -> None:
            side_optional = name.startswith("sides/") and name.rsplit("/", 1)[-1] in OPTIONAL_SIDE_DATASETS
            if isinstance(obj, h5py.Dataset) and name not in OPTIONAL_DATASETS and not side_optional:
                new.create_dataset(name, data=obj[()])

        old.visititems(copy)
        for side in ("aligned", "base"):
            for key in ("model", "template", "dtype"):
                new[f"sides/{side}"].attrs[key] = old[f"sides/{side}"].attrs[key]
    return target
