"""The shipped TF-IDF transform is a faithful re-implementation of sklearn's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.lexical import CHAR_WB_2_5, WORD_1_2, Lexical, check_matches_sklearn, fit_blocks, fit_vectorizer, ngrams

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


def test_char_wb_terms_like_sklearn() -> None:
    sk = CHAR_WB_2_5.sklearn_vectorizer().build_analyzer()
    for text in ["I  am SOOO happy!!", "a", "x\t\ty", "Ünïcödé ÇA 😀", ""]:
        assert CHAR_WB_2_5.terms(text) == sk(text), text


def test_word_and_char_blocks_match_sklearn_and_round_trip() -> None:
    texts = [*TEXTS, "sooo good :) #love", "worst. flight. ever. smh"]
    vocab, idf, x, layout = fit_blocks(texts, [(WORD_1_2, 1), (CHAR_WB_2_5, 1)])
    assert [a for a, _ in layout] == [WORD_1_2, CHAR_WB_2_5]
    weight = np.random.default_rng(0).normal(size=(3, len(vocab)))
    lex = Lexical(vocab, idf, weight, np.zeros(3), layout)
    check_matches_sklearn(lex, texts, x)
    # Each analyser block is normalised on its own, as sklearn's hstack of two vectorisers.
    row = lex.transform(["sooo good"]).toarray()[0]
    words = layout[0][1]
    assert np.isclose(np.linalg.norm(row[:words]), 1.0) and np.isclose(np.linalg.norm(row[words:]), 1.0)
    again = Lexical.from_arrays(json.loads(json.dumps(lex.vocab_json())), idf, weight, np.zeros(3))
    np.testing.assert_allclose(again.logits(texts), lex.logits(texts), rtol=1e-5)


def test_words_seen_before_give_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    # char_wb columns are kept per word; a second pass (every word cached) and a full cache (nothing
    # more kept) must both give sklearn's rows.
    texts = [*TEXTS, "app app APP crashed", "refund\t\trefund  refund!!", "Ünïcödé ÇA 😀 app"]
    vocab, idf, x, layout = fit_blocks(texts, [(WORD_1_2, 1), (CHAR_WB_2_5, 1)])
    lex = Lexical(vocab, idf, np.zeros((2, len(vocab))), np.zeros(2), layout)
    check_matches_sklearn(lex, texts, x)
    assert lex.blocks[1]._word_columns, "the char block keeps its words' columns"
    check_matches_sklearn(lex, texts, x)
    monkeypatch.setattr("models.lexical.WORD_CACHE_SIZE", 0)
    fresh = Lexical(vocab, idf, np.zeros((2, len(vocab))), np.zeros(2), layout)
    check_matches_sklearn(fresh, texts, x)
    assert not fresh.blocks[1]._word_columns


def test_mismatch_is_caught() -> None:
    vocab, idf, x = fit_vectorizer(TEXTS)
    skewed = idf * np.linspace(0.5, 2.0, len(idf))  # uniform scaling would cancel in the L2 norm
    wrong = Lexical(vocab, skewed, np.zeros((2, len(vocab))), np.zeros(2))
    with pytest.raises(AssertionError, match="differs from sklearn"):
        check_matches_sklearn(wrong, TEXTS, x)
