"""Hand-built artifacts for the dashboard tests (small enough to check every number by hand)."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
from streamlit.testing.v1 import AppTest

from compute.core.artifact.records import ExampleScores, RunMeta, SideContext
from compute.core.artifact.writer import write_artifact

ROOT = Path(__file__).resolve().parent.parent

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


def label(name: str) -> str:
    """The sidebar's label of a run written by write_run: its name and its pair of sides."""
    return f"{name} · aligned (chat) vs base (‘plain’)"


ALPHA_LABEL, BETA_LABEL = label("alpha"), label("beta")
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


PLAIN_SIDES = {
    "aligned": {"model": "tiny/aligned", "template": "chat", "dtype": "float32"},
    "base": {"model": "tiny/base", "template": "plain", "dtype": "float32"},
}


def write_run(
    path: Path, examples: list[ExampleScores], overwrite: bool = False, sides: dict[str, dict[str, str]] | None = None
) -> Path:
    """Write a run named after the file (sides: tiny/aligned under chat vs tiny/base under plain, unless given)."""
    meta = RunMeta(name=path.stem, top_k=TOP_K, side_attrs=sides or PLAIN_SIDES)
    write_artifact(path, meta, examples, TOKENS, overwrite=overwrite)
    return path


# alpha: 9 positions; base ranks give unshifted 4, marginal 2, shifted 3.
ALPHA = [
    example(0, "ex-a", "Say hi *now*", [1, 2, 3, 4, 5], [5, 0, 1, 0, 3], [0.5, 0.1, 0.2, 0.0, 1.0], CONTEXT_TEXT),
    example(1, "ex-b", "Be literal", [6, 7, 8, 9], [0, 0, 2, 10], [0.0, 0.0, 0.3, 2.0], "<s>literal"),
]
# other: ex-a with another answer than alpha's and beta's, so it shares no answer with either.
OTHER = [example(0, "ex-a", "Say hi *now*", [2, 3], [0, 3], [0.1, 0.2])]
# beta: ex-a has the same answer (ranks differ), ex-b a different one, ex-c only here.
BETA = [
    example(0, "ex-a", "Say hi *now*", [1, 2, 3, 4, 5], [0, 0, 1, 0, 0], [0.1] * 5),
    example(1, "ex-b", "Be literal", [10, 2], [4, 0], [0.5, 0.5]),
    example(2, "ex-c", "Only in beta", [10], [0], [0.0]),
]


# A stage chain over one answer set: base -> SFT -> DPO (adapters on one base model), scored by both adjacent pairs
# and by base -> DPO. Base ranks (3+ shifted, 1-2 marginal) per answer, in the order SFT/base, DPO/SFT, DPO/base:
#   c-0 [1, 2, 3, 4, 5]  t0: S+B   t1: none   t2: only D (S marginal)   t3: none   t4: all three
#   c-1 [9, 10]          t0: S+B   t1: D+B
#   c-2 [6, 7, 8]        t0: none (D marginal)   t1: none   t2: only B
# dpo-vs-sft lists its examples in another order; dpo-vs-base holds one more answer (c-3) that the others lack.
CHAIN_BASE = {"model": "tiny/base", "template": "chat", "dtype": "float32"}
CHAIN_SFT = {**CHAIN_BASE, "adapter": "adapters/tiny-sft"}
CHAIN_DPO = {**CHAIN_BASE, "adapter": "adapters/tiny-dpo/"}
CHAIN_ANSWERS = {"c-0": [1, 2, 3, 4, 5], "c-1": [9, 10], "c-2": [6, 7, 8], "c-3": [10]}
CHAIN = {  # file stem -> (aligned side, base side, base ranks per answer id)
    "chain-sft-vs-base": (CHAIN_SFT, CHAIN_BASE, {"c-0": [5, 0, 1, 0, 3], "c-1": [4, 0], "c-2": [0, 0, 0]}),
    "chain-dpo-vs-sft": (CHAIN_DPO, CHAIN_SFT, {"c-2": [2, 0, 0], "c-0": [0, 0, 4, 0, 3], "c-1": [0, 9]}),
    "chain-dpo-vs-base": (
        CHAIN_DPO,
        CHAIN_BASE,
        {"c-0": [5, 0, 0, 0, 3], "c-1": [4, 9], "c-2": [0, 0, 6], "c-3": [0]},
    ),
}


def chain_runs(directory: Path) -> dict[str, Path]:
    """The three runs of CHAIN in `directory`, by file stem."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem, (aligned, base, ranks) in CHAIN.items():
        examples = [
            example(i, id_, f"prompt {id_}", CHAIN_ANSWERS[id_], r, [0.1] * len(r))
            for i, (id_, r) in enumerate(ranks.items())
        ]
        paths[stem] = write_run(directory / f"{stem}.h5", examples, sides={"aligned": aligned, "base": base})
    return paths


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


def _edit(path: Path, edit) -> Path:
    """Apply `edit(h5py.File)` to an artifact in place (the file stays 'complete')."""
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def _replace(f: h5py.File, name: str, data) -> None:
    del f[name]
    f.create_dataset(name, data=data)


UTF8_CONTEXT = "<s>café ☕"  # é and ☕ are several bytes each


def odd_files(directory: Path) -> dict[str, Path]:
    """Artifacts the reader accepts but that are odd: no positions (a judged nudging run), no examples,
    integer-like ids, context text offsets that split a UTF-8 character, top-k ids outside the token table,
    NaN / inf / huge values, and a cross-sampling run inserting an unknown side with no answer judged."""
    directory.mkdir(parents=True, exist_ok=True)
    empty = [example(0, "e0", "empty answer", [], [], []), example(1, "e1", "another", [], [], [])]
    nudged = {"decoding": "nudging", "decoding_threshold": 0.4, "task": "arithmetic"}  # nudging with no positions
    verdicts = {"examples/correct": np.array([0, -1], np.int8), "positions/source": np.zeros(0, np.int8)}
    files = {
        "no_positions": write_with(directory / "no_positions.h5", empty, nudged, verdicts),
        "odd_decoding": write_with(  # a side that is neither, no answer judged
            directory / "odd_decoding.h5",
            ALPHA,
            {"decoding": "cross-sampling", "decoding_insert": "sideways", "task": "arithmetic"},
            {"examples/correct": np.array([-1, -1], np.int8), "positions/source": np.ones(9, np.int8)},
        ),
        "no_examples": write_run(directory / "no_examples.h5", []),
        "integer_ids": write_run(
            directory / "integer_ids.h5",
            [example(0, "1", "one", [1, 2], [0, 4], [0.1, 0.2]), example(1, "01", "two", [3], [1], [0.3])],
        ),
    }
    split = write_run(
        directory / "split_utf8.h5",
        [
            example(0, "ex-a", "p", [1, 2], [0, 4], [0.1, 0.2], UTF8_CONTEXT),
            example(1, "ex-b", "q", [3], [1], [0.3], "<s>x"),
        ],
    )
    cut = len(b"<s>caf") + 1  # between the two bytes of é
    end = len(UTF8_CONTEXT.encode()) + len(b"<s>x")
    files["split_utf8"] = _edit(
        split, lambda f: _replace(f, "sides/aligned/context_text_offsets", np.array([0, cut, end], np.int64))
    )
    outside = write_run(directory / "topk_outside.h5", ALPHA)

    def far_ids(f: h5py.File) -> None:
        ids = f["sides/base/topk_ids"][()]
        ids[:, 0] = [999_999, -1, 2**31 - 1, 100, 100, 100, 100, 100, 100]
        _replace(f, "sides/base/topk_ids", ids)
        _replace(f, "positions/token_id", np.array([1, 2, 3, 4, 5, 6, 7, 8, 123_456], np.int32))

    files["topk_outside"] = _edit(outside, far_ids)
    nonfinite = write_run(directory / "nonfinite.h5", ALPHA)

    def bad_numbers(f: h5py.File) -> None:
        _replace(f, "positions/kl", np.array([np.nan, np.inf, -np.inf, 1e30, 0, 0, 0, 0, 0], np.float32))
        _replace(f, "sides/base/entropy", np.array([np.inf, np.nan, 1e30, 2, 2, 2, 2, 2, 2], np.float32))
        _replace(f, "sides/aligned/entropy", np.array([1e30, np.nan, 1, 1, 1, 1, 1, 1, 1], np.float32))
        _replace(f, "sides/aligned/logprob", np.array([1e30, np.nan, np.inf, 0, 0, 0, 0, 0, 0], np.float32))
        _replace(f, "sides/base/logprob", np.array([-np.inf, np.nan, 1e30, 0, 0, 0, 0, 0, 0], np.float32))
        _replace(f, "sides/base/topk_logprobs", np.full((9, TOP_K), np.nan, np.float32))

    files["nonfinite"] = _edit(nonfinite, bad_numbers)
    return files


def _claim_huge(f: h5py.File) -> None:
    """Say alpha's second answer is 10^12 tokens long, with every per-position dataset that shape but stored empty."""
    n = 10**12
    f["examples/offsets"][2] = n
    for name in [name for name in _position_datasets(f)]:
        shape, dtype = (n, *f[name].shape[1:]), f[name].dtype
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype, chunks=(1024, *shape[1:]))


def _position_datasets(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, node: names.append(name) if isinstance(node, h5py.Dataset) else None)
    return [name for name in names if name.startswith(("positions/", "sides/")) and "context" not in name]


# Copies of alpha that only a look inside the datasets tells apart from a good artifact: what the reader
# must refuse, and words its one line must hold.
REFUSED = {
    "claims_huge": (_claim_huge, "/positions/example claims shape (1000000000000,) but the file holds only part of it"),
    "context_offsets_decrease": (
        lambda f: _replace(f, "sides/base/context_offsets", np.array([0, 7, 6], np.int64)),
        "/sides/base/context_offsets must start at 0, never decrease and end at the length of /sides/base/context_ids",
    ),
    "text_offsets_past_end": (
        lambda f: _replace(f, "sides/aligned/context_text_offsets", np.array([0, 10, 10**6], np.int64)),
        "/sides/aligned/context_text_offsets must start at 0, never decrease and end at the length",
    ),
    "example_disagrees": (
        lambda f: _replace(f, "positions/example", np.zeros(9, np.int32)),
        "/positions/example disagrees with /examples/offsets",
    ),
    "t_disagrees": (
        lambda f: _replace(f, "positions/t", np.arange(9, dtype=np.int32)),
        "/positions/t does not count 0, 1, ... within each example",
    ),
    "ids_not_text": (
        lambda f: _replace(f, "examples/id", np.array([1, 2], np.int64)),
        "/examples/id has type int64, expected strings",
    ),
    "token_id_float": (
        lambda f: _replace(f, "positions/token_id", np.ones(9, np.float32)),
        "/positions/token_id has type float32, expected integers",
    ),
    "tokens_repeat": (
        lambda f: _replace(f, "tokens/id", np.array([1] * len(TOKENS), np.int32)),
        "/tokens/id lists an id more than once",
    ),
}


def refused_files(directory: Path) -> dict[str, Path]:
    """One copy of alpha per entry of REFUSED, edited as that entry says."""
    directory.mkdir(parents=True, exist_ok=True)
    return {name: _edit(write_run(directory / f"{name}.h5", ALPHA), edit) for name, (edit, _) in REFUSED.items()}


def write_with(
    path: Path,
    examples: list[ExampleScores],
    attrs: dict[str, object],
    datasets: dict[str, np.ndarray],
    base_model: str = "tiny/base",
) -> Path:
    """write_run's run with extra root `attrs` and extra `datasets` (path -> values, e.g. the optional
    positions/source), and `base_model` as the base side's model."""
    meta = RunMeta(
        name=path.stem,
        top_k=TOP_K,
        side_attrs={
            "aligned": {"model": "tiny/aligned", "template": "chat", "dtype": "float32"},
            "base": {"model": base_model, "template": "plain", "dtype": "float32"},
        },
        attrs=attrs,
    )

    def add(f: h5py.File) -> None:
        for name, values in datasets.items():
            if name in f:  # a writer that knows the dataset (examples/correct of a run with a task) wrote a default
                del f[name]
            f.create_dataset(name, data=values, dtype=h5py.string_dtype() if values.dtype == object else None)

    write_artifact(path, meta, examples, TOKENS, extra=add)
    return path


def experiment_run(
    directory: Path,
    name: str,
    correct: list[int] | None,
    rule: str | None = None,
    source: list[int] | None = None,
    base_model: str = "tiny/base",
    **params: object,
) -> Path:
    """A run over ALPHA's two examples on the dataset "arith.jsonl": judged by the task "arithmetic" where
    `correct` is given (1 right, 0 wrong, -1 not judged), decoded by `rule` (no attribute where None) with its
    `params` as decoding_* attributes, and `source` (which side emitted each of the 9 positions) where given."""
    attrs: dict[str, object] = {"dataset": "arith.jsonl"}
    datasets: dict[str, np.ndarray] = {}
    if correct is not None:
        attrs["task"] = "arithmetic"
        datasets["examples/correct"] = np.array(correct, dtype=np.int8)
        datasets["examples/reference"] = np.array(["7", "9"], dtype=object)
    if rule is not None:
        attrs["decoding"] = rule
        attrs.update({f"decoding_{key}": value for key, value in params.items()})
    if source is not None:
        datasets["positions/source"] = np.array(source, dtype=np.int8)
    return write_with(directory / f"{name}.h5", ALPHA, attrs, datasets, base_model)


def open_page(page: str) -> AppTest:
    """The app on one page (the default selection) under AppTest, which must run without an exception."""
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    if page != "overview":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at
