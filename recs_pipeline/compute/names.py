"""What names tell, and what of them may be shown.

Tournament names: the series and the organiser behind a listing.

Platforms name recurring cups after their series ("Nova Esports Weekly #12", "Redline Open S3
Qualifier"), and players come back to the series and organisers they like. Nothing else in the
contract carries that identity, so names are read, and reduced to two keys:

* series: the name without its instance markers (numbers, `#12`, `S3`, years, roman numerals,
  qualifier/final stage words), lower case: every edition of a series has the same key;
* organiser: the series key's first word.

Names are never copied into any output: they only become these keys, and a TF-IDF profile of
their words (scikit-learn's `TfidfVectorizer`) for a softer "sounds like your past cups" signal.

Game names are app-owned free text, and the one name a reason shows: only ever through
`display_name`, which keeps letters, digits, spaces and a small punctuation allowlist, bounded in
length. Nothing of the stored text that means something to HTML, templates or mail gets through.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

# Tokens that mark one edition of a series rather than the series itself.
_INSTANCE_TOKEN = re.compile(
    r"^(?:#?\d+\w*|s\d+|season|week|day|edition|ed|vol|round|qualifier|qualifiers|quali|"
    r"final|finals|semifinal|playoffs?|open-?qualifier|"
    r"i{1,3}|iv|v|vi{1,3}|ix|x{1,3})$"
)
_WORD = re.compile(r"[a-z0-9#]+")


def series_key(names: pd.Series | np.ndarray) -> np.ndarray:
    """The series of each name (object array of str; '' for a missing or empty name)."""
    out = np.empty(len(names), dtype=object)
    for i, name in enumerate(pd.Series(names, dtype=object).fillna("").astype(str)):
        words = [w for w in _WORD.findall(name.lower()) if not _INSTANCE_TOKEN.match(w)]
        out[i] = " ".join(words)
    return out


def organiser_key(series: np.ndarray) -> np.ndarray:
    """The first word of each series key ('' where there is none)."""
    return np.array([s.split(" ", 1)[0] if s else "" for s in series], dtype=object)


def key_codes(*keys: np.ndarray) -> list[np.ndarray]:
    """Integer codes over the union of the key arrays; '' (no key) becomes -1 everywhere."""
    vocabulary = pd.Index(np.unique(np.concatenate([k.astype(str) for k in keys])))
    return [np.where(k == "", -1, vocabulary.get_indexer(k.astype(str))).astype(np.int64)
            for k in keys]


def name_vectors(*names: pd.Series) -> list[sp.csr_matrix]:
    """L2-normalised TF-IDF word vectors of each name series, over one shared vocabulary.

    Words are letters only (numbers and edition markers say nothing about taste); a vocabulary
    that ends up empty gives zero-width matrices.
    """
    texts = [pd.Series(n, dtype=object).fillna("").astype(str).str.lower() for n in names]
    vectorizer = TfidfVectorizer(token_pattern=r"(?u)\b[a-z]{2,}\b", min_df=1, sublinear_tf=True)
    try:
        vectorizer.fit(pd.concat(texts, ignore_index=True))
    except ValueError:  # no word at all in any name
        return [sp.csr_matrix((len(t), 0), dtype=np.float32) for t in texts]
    return [vectorizer.transform(t).astype(np.float32).tocsr() for t in texts]


# Punctuation a display name keeps: enough for "Counter-Strike 2", "Dota 2: Reborn", "C++ Wars",
# "Tekken 8 (PS5)", "R6/Siege". Never `<>&"'@` or a backtick: they mean something to HTML,
# templates and mail.
DISPLAY_PUNCTUATION = frozenset("-_.:+#()/!?,")
ELLIPSIS = "\u2026"
_TAG = re.compile(r"<[^<>]*>")  # markup: without this, "<b>" would leave a stray word "b"
_APOSTROPHES = frozenset("'`\u00b4\u2018\u2019\u02bc")  # dropped: "Clancy's" -> "Clancys"
_TRAILING = " -_.:+#(/,"  # not worth keeping in front of the ellipsis
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")  # Hangul fillers: letters that show nothing


def _display_char(ch: str) -> str:
    if ch.isspace():
        return " "  # line breaks and tabs included
    if ch in _APOSTROPHES or ch in _BLANK_LETTERS or unicodedata.category(ch)[0] == "C":
        return ""  # invisible (controls, bidi overrides, zero-width) or inside a word
    if ch in DISPLAY_PUNCTUATION or unicodedata.category(ch)[0] in "LNM":
        return ch
    return " "  # any other symbol separates words


def _meaningful(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def display_name(raw: str | None, max_length: int = 40) -> str | None:
    """`raw` as plain text safe to show anywhere, or None when nothing meaningful remains.

    NFKC first (so a fullwidth less-than sign is caught as `<`), then markup tags removed, then
    every character kept only if it is a letter, digit, combining mark, space or in
    `DISPLAY_PUNCTUATION`: controls, format characters (bidi overrides, zero-width) and blank
    "letters" vanish, other symbols become spaces. Whitespace is collapsed; a longer result is
    cut on a word boundary (when one keeps at least half of it) and ends with an ellipsis,
    `max_length` characters at most. No letter or digit left -> None.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    if not isinstance(raw, str):
        return None
    text = _TAG.sub(" ", unicodedata.normalize("NFKC", raw))
    text = " ".join("".join(_display_char(ch) for ch in text).split())
    if len(text) > max_length:
        cut = text[:max_length - 1]
        space = cut.rfind(" ")
        if text[max_length - 1] != " " and space >= (max_length - 1) // 2:
            cut = cut[:space]  # back to the end of the last whole word
        text = cut.rstrip(_TRAILING) + ELLIPSIS
    return text if _meaningful(text) else None


def display_names(raw: pd.Series | Sequence[object], max_length: int = 40) -> np.ndarray:
    """`display_name` of each value (object array, None where nothing meaningful remains),
    computed once per distinct value: names repeat across many rows."""
    codes, uniques = pd.factorize(pd.Series(raw, dtype=object), use_na_sentinel=True)
    shown = [display_name(u, max_length) for u in uniques]
    return np.array([*shown, None], dtype=object)[codes]  # code -1 (missing) -> the last, None
