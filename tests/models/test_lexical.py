"""The shipped TF-IDF transform is a faithful re-implementation of sklearn's."""

from __future__ import annotations

import numpy as np

from models.lexical import Lexical, check_matches_sklearn, fit_vectorizer, ngrams

TEXTS = [
    "Refund still not here after 3 weeks!!",
    "the app crashed twice at checkout, app support never replied",
    "Queue at security: 45 min. Again.",
    "",
]


def test_ngrams_like_sklearn() -> None:
    assert ngrams("The app, the APP!") == ["the", "app", "the", "app", "the app", "app the", "the app"]


def test_transform_matches_sklearn() -> None:
    vocab, idf, x = fit_vectorizer(TEXTS)
    lex = Lexical(vocab, idf, np.zeros((2, len(vocab))), np.zeros(2))
    check_matches_sklearn(lex, TEXTS, x)  # raises on any difference
    rows = lex.transform(["refund refund app", "zzz qqq"])
    assert rows.shape == (2, len(vocab))
    assert np.isclose(np.linalg.norm(rows[0].toarray()), 1.0)
    assert rows[1].nnz == 0
