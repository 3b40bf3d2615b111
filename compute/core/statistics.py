"""The per-position statistics: one declaration each; scorer, writer, reader, check and dashboard derive from it.

A statistic is computed for every answer position either once per side (stored at
`sides/<side>/<name>`) or once per pair of sides (stored at `positions/<name>`). Its
declaration says how the scorer computes it from a chunk of rows' log-probabilities
(reusing what the chunk already holds), how `compute check` re-derives it naively from
one full-vocabulary distribution, its dtype and width, whether every artifact must
have it, and how pages aggregate it. Adding a statistic is one entry in STATISTICS
plus its test.

Only numpy is imported here: the dashboard reads this table without torch. The
compute functions receive torch tensors from the scorer and use their methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

SIDE_NAMES = ("aligned", "base")
Tensor = Any  # a torch.Tensor; torch itself is not imported here


class Chunk:
    """A block of answer rows: each side's float32 log-probabilities over the vocabulary (rows x V), the
    answer token of each row, and k. What several statistics need (probabilities, top-k, the answer
    token's log-probability, entropies) is computed once and kept for the chunk's lifetime.

    A run scoring several pairs over one answer set (a multi-side run) gives `logp` by cell name and
    `roles`, which cell plays the aligned and which the base side; `for_pair` makes the chunk of another
    pair of the same cells, sharing what was kept, so each cell's side statistics are computed once."""

    def __init__(
        self,
        logp: dict[str, Tensor],
        targets: Tensor,
        k: int,
        roles: dict[str, str] | None = None,
        kept: dict[tuple, Tensor] | None = None,
    ):
        self.cells = logp
        self.roles = roles or {side: side for side in SIDE_NAMES}
        self.logp = {side: logp[cell] for side, cell in self.roles.items()}
        self.targets = targets
        self.k = k
        self._kept: dict[tuple, Tensor] = {} if kept is None else kept

    def for_pair(self, aligned: str, base: str) -> Chunk:
        return Chunk(self.cells, self.targets, self.k, {"aligned": aligned, "base": base}, self._kept)

    def _keep(self, key: tuple, make: Callable[[], Tensor]) -> Tensor:
        if key not in self._kept:
            self._kept[key] = make()
        return self._kept[key]

    def p(self, side: str) -> Tensor:
        return self._keep(("p", self.roles[side]), lambda: self.logp[side].exp())

    def topk(self, side: str):
        return self._keep(("topk", self.roles[side]), lambda: self.logp[side].topk(self.k, dim=-1))

    def chosen(self, side: str) -> Tensor:
        """log P(o_t) per row, shape (rows, 1)."""
        return self._keep(("chosen", self.roles[side]), lambda: self.logp[side].gather(-1, self.targets[:, None]))

    def entropy(self, side: str) -> Tensor:
        # nansum: nan only where p = 0 and log p = -inf, a 0 term
        return self._keep(("entropy", self.roles[side]), lambda: -_nansum(self.p(side) * self.logp[side]))

    def other(self, side: str) -> Tensor:
        """log-probabilities of the other side, on this side's device."""
        name = SIDE_NAMES[1 - SIDE_NAMES.index(side)]
        return self.logp[name].to(self.logp[side].device)


def _nansum(values: Tensor) -> Tensor:
    import torch

    return torch.nansum(values, dim=-1)


def _rank(chunk: Chunk, side: str) -> Tensor:
    import torch

    # int32: five times faster than int64 on a CPU
    return (chunk.logp[side] > chunk.chosen(side)).sum(-1, dtype=torch.int32)


def _kl(chunk: Chunk, side: str | None) -> Tensor:
    diff = chunk.logp["aligned"] - chunk.other("aligned")
    return _nansum(chunk.p("aligned") * diff)  # nan only where p_aligned = 0: a 0 term


def _js(chunk: Chunk, side: str | None) -> Tensor:
    """JS = H(M) - (H(P_a) + H(P_b)) / 2 with M = (P_a + P_b) / 2: the sides' entropies are already in the
    chunk, so only the mixture's entropy costs a pass. Clamped to [0, ln 2] against float32 rounding."""
    mixture = (chunk.p("aligned") + chunk.p("base").to(chunk.logp["aligned"].device)) / 2
    mixture_entropy = -_nansum(mixture * mixture.log())
    entropies = chunk.entropy("aligned") + chunk.entropy("base").to(mixture.device)
    return (mixture_entropy - entropies / 2).clamp(0.0, math.log(2))


# ----------------------------------------------------------------- naive references (float64, one position)


def _naive_entropy(logp: np.ndarray) -> float:
    p = np.exp(logp)
    with np.errstate(invalid="ignore"):
        return float(-np.sum(np.where(p > 0, p * logp, 0.0)))


def _naive_kl(p_log: np.ndarray, q_log: np.ndarray) -> float:
    p = np.exp(p_log)
    with np.errstate(invalid="ignore"):
        return float(np.sum(np.where(p > 0, p * (p_log - q_log), 0.0)))


def _naive_js(logp: dict[str, np.ndarray]) -> float:
    """½ KL(P_a ‖ M) + ½ KL(P_b ‖ M), M = (P_a + P_b) / 2, written out as the definition says."""
    with np.errstate(divide="ignore"):
        m_log = np.log((np.exp(logp["aligned"]) + np.exp(logp["base"])) / 2)
    return 0.5 * _naive_kl(logp["aligned"], m_log) + 0.5 * _naive_kl(logp["base"], m_log)


def _naive_topk_ids(logp: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-logp, kind="stable")[:k]


# ----------------------------------------------------------------- how check compares


def close(stored: np.ndarray, naive: np.ndarray, logp: np.ndarray, atol: float) -> bool:
    return bool(np.allclose(stored, naive, atol=atol, rtol=1e-3))


def same_ids_up_to_ties(stored: np.ndarray, naive: np.ndarray, logp: np.ndarray, atol: float) -> bool:
    """Top-k ids agree, except where two candidates' log-probabilities tie within tolerance."""
    return all(got == want or abs(logp[got] - logp[want]) <= atol for got, want in zip(stored, naive, strict=True))


@dataclass(frozen=True)
class Statistic:
    name: str
    scope: str
    """"side": one value per side, at sides/<side>/<name>; "pair": one per position, at positions/<name>."""
    dtype: type
    topk: bool
    """Rows are (k,) vectors (the top-k lists) rather than scalars."""
    required: bool
    """Part of the format-v1 table: every artifact has it. Otherwise an optional addition a file may lack."""
    aggregate: str | None
    """"mean": pages show its mean per run and per position; None: not averaged (ranks, top-k lists)."""
    label: str
    unit: str
    doc: str
    compute: Callable[[Chunk, str | None], Tensor]
    """(chunk, side or None) -> one value (or k-vector) per row."""
    naive: Callable[[dict[str, np.ndarray], int, int, str | None], Any]
    """(float64 log-probabilities per side over the vocabulary, o_t, k, side or None) -> the expected value."""
    agrees: Callable[[np.ndarray, np.ndarray, np.ndarray, float], bool] = close
    """(stored, naive, this side's naive log-probabilities, atol) -> whether they agree."""

    def sides(self) -> tuple[str | None, ...]:
        return SIDE_NAMES if self.scope == "side" else (None,)

    def dataset(self, side: str | None = None) -> str:
        return f"sides/{side}/{self.name}" if self.scope == "side" else f"positions/{self.name}"

    def column(self, side: str | None = None) -> str:
        """The dashboard's column name: `kl`, `js`, `entropy_aligned`, ..."""
        return f"{self.name}_{side}" if self.scope == "side" else self.name

    def datasets(self) -> list[str]:
        return [self.dataset(side) for side in self.sides()]

    def empty(self, k: int) -> np.ndarray:
        return np.zeros((0, k) if self.topk else (0,), dtype=self.dtype)


STATISTICS: tuple[Statistic, ...] = (
    Statistic(
        name="topk_ids",
        scope="side",
        dtype=np.int32,
        topk=True,
        required=True,
        aggregate=None,
        label="top-k ids",
        unit="",
        doc="the side's k most likely next tokens, most likely first",
        compute=lambda chunk, side: chunk.topk(side).indices,
        naive=lambda logp, target, k, side: _naive_topk_ids(logp[side], k),
        agrees=same_ids_up_to_ties,
    ),
    Statistic(
        name="topk_logprobs",
        scope="side",
        dtype=np.float32,
        topk=True,
        required=True,
        aggregate=None,
        label="top-k log-probabilities",
        unit="nats",
        doc="log-probabilities of the top-k ids (full-vocabulary softmax)",
        compute=lambda chunk, side: chunk.topk(side).values,
        naive=lambda logp, target, k, side: np.sort(logp[side])[::-1][:k],
    ),
    Statistic(
        name="logprob",
        scope="side",
        dtype=np.float32,
        topk=False,
        required=True,
        aggregate="mean",
        label="log P(o_t)",
        unit="nats",
        doc="log-probability of the answer token o_t under the side",
        compute=lambda chunk, side: chunk.chosen(side)[:, 0],
        naive=lambda logp, target, k, side: logp[side][target],
    ),
    Statistic(
        name="rank",
        scope="side",
        dtype=np.int32,
        topk=False,
        required=True,
        aggregate=None,
        label="rank of o_t",
        unit="",
        doc="vocabulary entries with a strictly greater log-probability than o_t (0 = top-1)",
        compute=_rank,
        naive=lambda logp, target, k, side: int(np.sum(logp[side] > logp[side][target])),
    ),
    Statistic(
        name="entropy",
        scope="side",
        dtype=np.float32,
        topk=False,
        required=True,
        aggregate="mean",
        label="entropy",
        unit="nats",
        doc="entropy of the side's next-token distribution",
        compute=lambda chunk, side: chunk.entropy(side),
        naive=lambda logp, target, k, side: _naive_entropy(logp[side]),
    ),
    Statistic(
        name="kl",
        scope="pair",
        dtype=np.float32,
        topk=False,
        required=True,
        aggregate="mean",
        label="KL(aligned ‖ base)",
        unit="nats",
        doc="KL(P_aligned ‖ P_base) over the full vocabulary",
        compute=_kl,
        naive=lambda logp, target, k, side: _naive_kl(logp["aligned"], logp["base"]),
    ),
    Statistic(
        name="js",
        scope="pair",
        dtype=np.float32,
        topk=False,
        required=False,
        aggregate="mean",
        label="JS(aligned, base)",
        unit="nats",
        doc="Jensen-Shannon divergence with the mixture M = (P_a + P_b)/2, full vocabulary; 0 to ln 2",
        compute=_js,
        naive=lambda logp, target, k, side: _naive_js(logp),
    ),
)

BY_NAME = {stat.name: stat for stat in STATISTICS}


def columns() -> list[tuple[str, str, Statistic, str | None]]:
    """(column, dataset, statistic, side) for every stored statistic, side by side."""
    return [(stat.column(side), stat.dataset(side), stat, side) for stat in STATISTICS for side in stat.sides()]


def compute_chunk(chunk: Chunk) -> dict[str, Tensor]:
    """Every statistic of a chunk of rows, by dataset path. Each is kept in the chunk under the cells it
    depends on, so pairs sharing a cell (or both cells) compute it once."""

    def kept(stat: Statistic, side: str | None) -> Tensor:
        cells = (chunk.roles[side],) if side else (chunk.roles["aligned"], chunk.roles["base"])
        return chunk._keep((stat.name, *cells), lambda: stat.compute(chunk, side))

    return {stat.dataset(side): kept(stat, side) for stat in STATISTICS for side in stat.sides()}
