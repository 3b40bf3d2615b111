"""The dashboard's pure parts: token types, position bins, aggregates, literal rendering."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from compute.core import tables
from compute.core import token_types as tokens
from dashboard import render, stats, ui


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (" However", tokens.DISCOURSE),
        ("Additionally", tokens.DISCOURSE),
        ("Thank", tokens.POLITENESS),
        (" Sure", tokens.POLITENESS),
        (" apologize", tokens.POLITENESS),
        (" AI", tokens.POLITENESS),
        ("ethical", tokens.POLITENESS),
        ("!", tokens.PUNCTUATION),
        ("...", tokens.PUNCTUATION),
        ("\n\n", tokens.WHITESPACE),
        ("  ", tokens.WHITESPACE),
        (" 1,000", tokens.NUMBER),
        ("3.5%", tokens.NUMBER),
        ("();", tokens.CODE),
        ("```", tokens.CODE),
        ("_init", tokens.CODE),
        (" cat", tokens.WORD),
        ("**", tokens.PUNCTUATION),
    ],
)
def test_classify(text, kind):
    assert tokens.classify(text) == kind


def test_bin_edges_exact_then_two_per_doubling():
    edges = tables.bin_edges(200)
    assert edges[:32].tolist() == list(range(32))
    assert edges[32:].tolist() == [32, 48, 64, 96, 128, 192, 256, 384]
    assert tables.bin_start(np.array([0, 31, 32, 47, 48, 100, 200]), edges).tolist() == [0, 31, 32, 32, 48, 96, 192]


def test_by_position_bins_the_tail():
    lengths = [100, 40]
    t = np.concatenate([np.arange(n) for n in lengths])
    frame = pl.DataFrame(
        {
            "t": t,
            "category": np.where(t >= 32, 2, 0).astype(np.int8),
            "kl": np.ones(len(t), dtype=np.float32),
            "entropy_aligned": np.ones(len(t), dtype=np.float32),
            "entropy_base": np.ones(len(t), dtype=np.float32),
        }
    )
    table = tables.by_position(frame, pl.Series(lengths)).to_pandas().set_index("t_start")
    assert table.index.tolist() == [*range(32), 32, 48, 64, 96]
    assert table.loc[32, ["t_end", "positions", "answers_reaching"]].tolist() == [47, 16 + 8, 2]
    assert table.loc[48, ["t_end", "positions", "answers_reaching"]].tolist() == [63, 16, 1]
    assert table.loc[96, ["t_end", "positions"]].tolist() == [127, 4]
    assert table.loc[5, "share_shifted"] == 0 and table.loc[64, "share_shifted"] == 1


def test_in_context_stays_inside_the_example():
    ids = np.array([1, 2, 3, 4])
    example = np.array([0, 0, 1, 1])
    text = {1: "a", 2: "b", 4: "\n"}
    assert stats.in_context(ids, example, 1, text) == "a⟦b⟧"
    assert stats.in_context(ids, example, 2, text) == "⟦⟨3⟩⟧\n"


def test_token_html_is_escaped_and_shows_newlines():
    out = render.token_html('<b>"x"</b>\n', "#fff", 'say "hi" <now>')
    assert "<b>" not in out and "&lt;b&gt;&quot;x&quot;&lt;/b&gt;↵</span><br>" in out
    assert 'title="say &quot;hi&quot; &lt;now&gt;"' in out


def test_md_escape_neutralises_markdown_and_directives():
    assert ui.md_escape("**a** :red[b] $x$ _c_") == r"\*\*a\*\* \:red\[b\] \$x\$ \_c\_"


def test_by_position_of_no_positions_has_the_same_columns():
    columns = {"t": pl.Int32, "category": pl.Int8, "kl": pl.Float32, "entropy_aligned": pl.Float32}
    frame = pl.DataFrame(schema={**columns, "entropy_base": pl.Float32})
    empty = tables.by_position(frame, pl.Series([], dtype=pl.Int64))
    one = pl.DataFrame([pl.Series(name, [0], dtype=dtype) for name, dtype in frame.schema.items()])
    full = tables.by_position(one, pl.Series([1]))
    assert empty.height == 0 and empty.schema == full.schema  # so the runs' tables concatenate


def test_shared_answers_need_the_same_id_and_tokens():
    def prints(ids: list[str], answers: list[list[int]]) -> frozenset[str]:
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in answers])]).astype(np.int64)
        hashes = tables.answer_hashes(ids, offsets, np.array([t for a in answers for t in a], dtype=np.int32))
        return frozenset(h for h, a in zip(hashes, answers, strict=True) if a)

    a = prints(["x", "y", "e"], [[1, 2], [3], []])
    b = prints(["x", "y", "e"], [[1, 2], [4], []])  # x the same; y differs; e empty on both
    c = prints(["z", "w"], [[1, 2], [3]])  # a's answers under other ids
    d = prints(["x", "y"], [[1, 2], [3]])
    assert len(a) == 2  # an empty answer has nothing to compare
    assert stats.shared_answers([a, b, c, d]) == [(0, 3, 2), (0, 1, 1), (1, 3, 1)]
