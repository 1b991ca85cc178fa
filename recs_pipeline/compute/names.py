"""What tournament names tell: the series and the organiser behind a listing.

Platforms name recurring cups after their series ("Nova Esports Weekly #12", "Redline Open S3
Qualifier"), and players come back to the series and organisers they like. Nothing else in the
contract carries that identity, so names are read, and reduced to two keys:

* series: the name without its instance markers (numbers, `#12`, `S3`, years, roman numerals,
  qualifier/final stage words), lower case: every edition of a series has the same key;
* organiser: the series key's first word.

Names are never copied into any output: they only become these keys, and a TF-IDF profile of
their words (scikit-learn's `TfidfVectorizer`) for a softer "sounds like your past cups" signal.
"""

from __future__ import annotations

import re

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
