"""Token types: what kind of token an aligned token is (discourse marker, politeness word, number, ...).

A token is classified from its decoded text alone, once per token id: the text
is stripped and lowercased and checked against short word lists. Phrases such
as "As an AI" or "I apologize" span several tokens; each of their words is
caught on its own ("ai", "apolog").
"""

from __future__ import annotations

import re
import string

import polars as pl

DISCOURSE = "discourse / transition"
POLITENESS = "politeness / safety"
PUNCTUATION = "punctuation"
WHITESPACE = "whitespace / newline"
NUMBER = "number"
CODE = "code"
WORD = "other word"
TYPES = (DISCOURSE, POLITENESS, PUNCTUATION, WHITESPACE, NUMBER, CODE, WORD)

DISCOURSE_WORDS = frozenset(
    "however additionally furthermore moreover firstly secondly thirdly finally overall therefore thus hence "
    "also instead meanwhile besides nevertheless nonetheless consequently lastly ultimately indeed alternatively "
    "similarly likewise specifically generally basically essentially importantly notably conclusion summary "
    "first second third next then although though whereas".split()
)
POLITENESS_WORDS = frozenset(
    "thank thanks sure certainly absolutely sorry happy glad please welcome hope help assist ai assistant "
    "language model apologize apologise unfortunately cannot can't appropriate inappropriate ethical unethical "
    "harmful harm respectful offensive illegal safe safety responsible dangerous hello".split()
)
POLITENESS_PREFIXES = ("apolog", "ethic", "respect", "thank")
CODE_CHARS = frozenset("{}();=<>_`\\|")
_NUMBER = re.compile(r"^[+-]?[\d.,]*\d[\d.,]*%?$")
_PUNCT = frozenset(string.punctuation) | frozenset("“”‘’–—…«»·•")


def classify(text: str) -> str:
    """The type of one token from its decoded text."""
    if text.strip() == "":
        return WHITESPACE
    word = text.strip().lower()
    if _NUMBER.match(word):
        return NUMBER
    if word in DISCOURSE_WORDS:
        return DISCOURSE
    if word in POLITENESS_WORDS or word.startswith(POLITENESS_PREFIXES):
        return POLITENESS
    if any(c in CODE_CHARS for c in word):
        return CODE
    if all(c in _PUNCT for c in word):
        return PUNCTUATION
    return WORD


def token_types(table: pl.DataFrame) -> pl.DataFrame:
    """The token table (id, text) with a `type` column, classified once per id."""
    return table.with_columns(pl.col("text").map_elements(classify, return_dtype=pl.String).alias("type"))
