"""A small lexical (TF-IDF) touchpoint model, ensembled with the embedding head.

Why: touchpoints are largely *about words* ("refund", "queue", "app", "crew"), and on
our dev split a TF-IDF logistic regression averaged with the embedding head beat the
embedding head alone. The transform is re-implemented here (sklearn's default word
tokeniser, uni+bigrams, sublinear tf, idf, L2 norm) so the shipped artifact is plain
arrays, not a pickle; :func:`check_matches_sklearn` proves the equivalence at train time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
from scipy import sparse

_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def ngrams(text: str) -> list[str]:
    """Lower-cased word unigrams and bigrams, as sklearn's ``TfidfVectorizer(ngram_range=(1, 2))``."""
    words = _TOKEN.findall(text.lower())
    return words + [f"{a} {b}" for a, b in pairwise(words)]


class Lexical:
    """TF-IDF features + a linear layer (weights fitted by :func:`fit_lexical`)."""

    def __init__(self, vocab: Sequence[str], idf: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> None:
        self.index = {term: i for i, term in enumerate(vocab)}
        self.vocab = list(vocab)
        self.idf = idf.astype(np.float32)
        self.weight = weight.astype(np.float32)
        self.bias = bias.astype(np.float32)

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """L2-normalised sublinear TF-IDF rows."""
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for text in texts:
            counts: dict[int, int] = {}
            for gram in ngrams(text):
                j = self.index.get(gram)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if counts:
                cols = np.fromiter(counts.keys(), dtype=np.int64)
                vals = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))) * self.idf[cols]
                vals /= np.linalg.norm(vals)
                indices.extend(cols.tolist())
                data.extend(vals.tolist())
            indptr.append(len(indices))
        return sparse.csr_matrix(
            (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
            shape=(len(texts), len(self.vocab)),
        )

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Class scores (N, C)."""
        return np.asarray(self.transform(texts) @ self.weight.T) + self.bias


def fit_vectorizer(texts: Sequence[str]) -> tuple[list[str], np.ndarray, sparse.csr_matrix]:
    """Fit sklearn's TF-IDF on ``texts``; returns (vocabulary in column order, idf, matrix)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)
    x = vec.fit_transform(texts)
    vocab = [""] * len(vec.vocabulary_)
    for term, j in vec.vocabulary_.items():
        vocab[j] = term
    return vocab, vec.idf_.astype(np.float32), x.tocsr()


def check_matches_sklearn(lex: Lexical, texts: Sequence[str], reference: sparse.csr_matrix) -> None:
    """Raise if our transform differs from sklearn's on ``texts`` (guards the re-implementation)."""
    diff = abs(lex.transform(texts) - reference).max() if len(texts) else 0.0
    if diff > 1e-4:
        raise AssertionError(f"lexical transform differs from sklearn by {diff}")
