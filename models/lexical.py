"""Small lexical (TF-IDF + linear) models, ensembled with the encoder's heads.

Why: touchpoints are largely *about words* ("refund", "queue", "app", "crew"), and
sentiment on tweets rides on spellings the uncased WordPiece encoder blurs ("sooo",
"#fail", "smh", ":("). On our validation data a TF-IDF logistic regression averaged
with the encoder head beat the head alone for both tasks.

The transforms are re-implemented here (sklearn's word tokeniser and its ``char_wb``
analyser, sublinear tf, idf, L2 norm per analyser block) so the shipped artifact is
plain arrays plus a vocabulary, not a pickle; :func:`check_matches_sklearn` proves the
equivalence at train time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import sparse

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_WHITE_SPACES = re.compile(r"\s\s+")


@dataclass(frozen=True)
class Analyzer:
    """How a text becomes terms: sklearn's ``word`` or ``char_wb`` analyser over an n-gram range."""

    kind: Literal["word", "char_wb"]
    min_n: int
    max_n: int

    def terms(self, text: str) -> list[str]:
        """The text's terms, in sklearn's order (lower-cased)."""
        text = text.lower()
        if self.kind == "word":
            words = _TOKEN.findall(text)
            grams = list(words) if self.min_n <= 1 else []
            for n in range(max(2, self.min_n), self.max_n + 1):
                grams.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
            return grams
        grams = []
        for word in _WHITE_SPACES.sub(" ", text).split():
            padded = f" {word} "
            for n in range(self.min_n, self.max_n + 1):
                if len(padded) <= n:  # a short word counts once, whole
                    grams.append(padded)
                    break
                grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
        return grams

    def sklearn_vectorizer(self, min_df: int = 1) -> Any:
        """The sklearn ``TfidfVectorizer`` this analyser re-implements."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(
            analyzer=self.kind, ngram_range=(self.min_n, self.max_n), sublinear_tf=True, min_df=min_df, dtype=np.float32
        )

    def to_json(self) -> dict[str, Any]:
        return {"analyzer": self.kind, "ngram_range": [self.min_n, self.max_n]}


WORD_CACHE_SIZE = 200_000
"""Words whose ``char_wb`` columns a block keeps (about 100 bytes each)."""

MAX_CHARS = 640
"""What the lexical models read of a post: about the encoder's 128 tokens, so both judge the same
opening of a long review (and a huge post costs no more than a long one)."""

TOUCHPOINT_VOCAB = "lexical_vocab.json"
SENTIMENT_VOCAB = "sentiment_lexical_vocab.json"
"""Artifact files of the lexical models' vocabularies; their arrays live in ``weights.safetensors``
under the prefixes ``lexical.`` (touchpoint) and ``sentiment_lexical.``."""

ARRAYS = ("idf", "weight", "bias")
"""The arrays a :class:`Lexical` stores under its prefix, in constructor order."""

WORD_1_2 = Analyzer("word", 1, 2)
CHAR_WB_2_5 = Analyzer("char_wb", 2, 5)


def ngrams(text: str) -> list[str]:
    """Lower-cased word unigrams and bigrams, as sklearn's ``TfidfVectorizer(ngram_range=(1, 2))``."""
    return WORD_1_2.terms(text)


@dataclass
class Block:
    """One analyser's slice of the feature space: columns ``offset .. offset + len(vocab)``."""

    analyzer: Analyzer
    vocab: list[str]
    offset: int

    def __post_init__(self) -> None:
        self.index = {term: self.offset + i for i, term in enumerate(self.vocab)}
        self._word_columns: dict[str, np.ndarray] = {}

    def columns(self, text: str) -> list[np.ndarray]:
        """The text's in-vocabulary terms as column arrays, one column per occurrence (the text already
        lower-cased); a column that occurs twice appears twice, and :meth:`Lexical.transform` counts them.

        A ``char_wb`` analyser's n-grams never cross a word boundary, so a text's columns are its words'.
        Each word's columns are computed once and kept (up to :data:`WORD_CACHE_SIZE` words): posts reuse
        a small vocabulary, and the n-grams were most of the lexical models' cost.
        """
        lookup = self.index.get
        if self.analyzer.kind != "char_wb":
            found = [j for j in map(lookup, self.analyzer.terms(text)) if j is not None]
            return [np.asarray(found, dtype=np.int32)]
        cache = self._word_columns
        arrays = []
        for word in text.split():
            cached = cache.get(word)
            if cached is None:
                cached = np.asarray(
                    [j for j in map(lookup, self.analyzer.terms(word)) if j is not None], dtype=np.int32
                )
                if len(cache) < WORD_CACHE_SIZE:
                    cache[word] = cached
            arrays.append(cached)
        return arrays


class Lexical:
    """TF-IDF features (one or more analyser blocks) + a linear layer.

    Args:
        vocab: Terms in column order; with several ``analyzers``, their vocabularies
            concatenated in the same order.
        idf: Inverse document frequency per column.
        weight: (classes, columns) linear weights.
        bias: (classes,) intercepts.
        analyzers: ``(analyzer, vocabulary size)`` per block; default one word 1-2 gram block.
    """

    def __init__(
        self,
        vocab: Sequence[str],
        idf: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray,
        analyzers: Sequence[tuple[Analyzer, int]] | None = None,
    ) -> None:
        self.vocab = list(vocab)
        layout = list(analyzers) if analyzers else [(WORD_1_2, len(self.vocab))]
        if sum(size for _, size in layout) != len(self.vocab):
            raise ValueError("analyzer block sizes do not add up to the vocabulary size")
        self.blocks: list[Block] = []
        offset = 0
        for analyzer, size in layout:
            self.blocks.append(Block(analyzer, self.vocab[offset : offset + size], offset))
            offset += size
        self.idf = np.ascontiguousarray(idf, dtype=np.float32)
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.bias = np.ascontiguousarray(bias, dtype=np.float32)

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Sublinear TF-IDF rows, each analyser block L2-normalised on its own (as sklearn's ``hstack``).

        Each (text, block) pair is one row of a scratch matrix holding a column once per occurrence
        (:meth:`Block.columns`); scipy sums the repeats into counts in C. The logarithms, idf weights
        and per-block norms are computed once for the whole batch, and a text's row is its blocks'
        rows side by side (their columns never overlap).
        """
        n_blocks = len(self.blocks)
        arrays: list[np.ndarray] = []
        lengths: list[int] = []
        for text in texts:
            lowered = text.lower()
            for block in self.blocks:
                found = block.columns(lowered)
                arrays.extend(found)
                lengths.append(sum(len(a) for a in found))
        cols = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)  # int32, as the blocks make them
        seg_ptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=seg_ptr[1:])
        scratch = sparse.csr_matrix(
            (np.ones(len(cols), dtype=np.float64), cols, seg_ptr), shape=(len(lengths), len(self.vocab))
        )
        scratch.sum_duplicates()  # sorts each row's columns and adds up repeats: counts
        vals = (1.0 + np.log(scratch.data)) * self.idf[scratch.indices]
        seg_ptr = scratch.indptr.astype(np.int64)
        sizes = np.diff(seg_ptr)
        if len(vals):
            starts = seg_ptr[:-1][sizes > 0]
            norms = np.sqrt(np.add.reduceat(vals * vals, starts))
            vals /= np.repeat(norms, sizes[sizes > 0])
        return sparse.csr_matrix(
            (vals.astype(np.float32), scratch.indices.astype(np.int64), seg_ptr[::n_blocks]),
            shape=(len(texts), len(self.vocab)),
        )

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Class scores (N, C) of each text's first :data:`MAX_CHARS` characters."""
        return np.asarray(self.transform([t[:MAX_CHARS] for t in texts]) @ self.weight.T) + self.bias

    def vocab_json(self) -> Any:
        """What ``*_vocab.json`` holds: a plain term list for one word block, else blocks + terms."""
        if len(self.blocks) == 1 and self.blocks[0].analyzer == WORD_1_2:
            return self.vocab
        return {
            "blocks": [{**b.analyzer.to_json(), "size": len(b.vocab)} for b in self.blocks],
            "vocab": self.vocab,
        }

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The arrays to store, keyed ``{prefix}.{name}`` (float32, contiguous)."""
        return {f"{prefix}.{name}": getattr(self, name) for name in ARRAYS}

    @classmethod
    def from_arrays(cls, vocab_json: Any, idf: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> Lexical:
        """Rebuild from :meth:`vocab_json` output and the stored arrays."""
        if isinstance(vocab_json, list):
            return cls(vocab_json, idf, weight, bias)
        layout = [
            (Analyzer(b["analyzer"], int(b["ngram_range"][0]), int(b["ngram_range"][1])), int(b["size"]))
            for b in vocab_json["blocks"]
        ]
        return cls(vocab_json["vocab"], idf, weight, bias, layout)


def fit_vectorizer(texts: Sequence[str]) -> tuple[list[str], np.ndarray, sparse.csr_matrix]:
    """Fit sklearn's word 1-2 gram TF-IDF on ``texts``; returns (vocabulary in column order, idf, matrix)."""
    vocab, idf, x, _ = fit_blocks(texts, [(WORD_1_2, 1)])
    return vocab, idf, x


def fit_blocks(
    texts: Sequence[str], analyzers: Sequence[tuple[Analyzer, int]]
) -> tuple[list[str], np.ndarray, sparse.csr_matrix, list[tuple[Analyzer, int]]]:
    """Fit one sklearn TF-IDF vectoriser per ``(analyzer, min_df)`` and stack them.

    Returns:
        ``(vocabulary in column order, idf, matrix, layout)``; ``layout`` is the
        ``(analyzer, size)`` list :class:`Lexical` takes.
    """
    vocab: list[str] = []
    idfs: list[np.ndarray] = []
    mats: list[sparse.csr_matrix] = []
    layout: list[tuple[Analyzer, int]] = []
    for analyzer, min_df in analyzers:
        vec = analyzer.sklearn_vectorizer(min_df)
        mats.append(vec.fit_transform(texts))
        terms = [""] * len(vec.vocabulary_)
        for term, j in vec.vocabulary_.items():
            terms[j] = term
        vocab.extend(terms)
        idfs.append(vec.idf_.astype(np.float32))
        layout.append((analyzer, len(terms)))
    return vocab, np.concatenate(idfs), sparse.hstack(mats).tocsr().astype(np.float32), layout


def check_matches_sklearn(lex: Lexical, texts: Sequence[str], reference: sparse.csr_matrix) -> None:
    """Raise if our transform differs from sklearn's on ``texts`` (guards the re-implementation)."""
    diff = abs(lex.transform(texts) - reference).max() if len(texts) else 0.0
    if diff > 1e-4:
        raise AssertionError(f"lexical transform differs from sklearn by {diff}")
