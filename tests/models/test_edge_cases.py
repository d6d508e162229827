"""Inputs the English encoder cannot judge well: say so with low confidence, never crash."""

from __future__ import annotations

import math


def test_empty_text(classifier) -> None:  # type: ignore[no-untyped-def]
    (result,) = classifier.classify([""])
    assert result.sentiment == "neutral"
    assert result.touchpoint == "other"
    assert result.moment == "neutral"
    assert result.confidence == 0.0
    assert result.lang is None
    assert result.severity == 0.0


def test_whitespace_is_empty(classifier) -> None:  # type: ignore[no-untyped-def]
    (result,) = classifier.classify(["   \n\t "])
    assert result.confidence == 0.0


def test_emoji_only(classifier) -> None:  # type: ignore[no-untyped-def]
    plain, emoji = classifier.classify(["The flight was fine and on time.", "😡😡😡"])
    assert emoji.lang is None
    assert emoji.confidence is not None and plain.confidence is not None
    assert emoji.confidence < plain.confidence
    assert emoji.confidence <= 0.3
    assert math.isclose(sum(emoji.sentiment_scores.values()), 1.0, abs_tol=1e-4)


def test_emoji_carry_sentiment(classifier) -> None:  # type: ignore[no-untyped-def]
    # Emoji are spelled out as words, so they are not all [UNK] to the encoder.
    angry, happy = classifier.classify(["my order 😡😡", "my order 😍😍"])
    assert angry.sentiment_scores["negative"] > happy.sentiment_scores["negative"]


def test_non_english_lowers_confidence(classifier) -> None:  # type: ignore[no-untyped-def]
    en, fr = classifier.classify(
        [
            "The service was terrible and nobody apologised for the delay.",
            "Le service était vraiment nul et personne ne s'est excusé pour le retard.",
        ]
    )
    assert en.lang == "en"
    assert fr.lang == "fr"
    assert fr.confidence is not None and en.confidence is not None
    assert fr.confidence < en.confidence
    assert max(fr.sentiment_scores.values()) <= 0.5 * 1.0 + 0.5 / 3 + 1e-6  # shrunk toward uniform


def test_very_long_text(classifier) -> None:  # type: ignore[no-untyped-def]
    sentence = "The delivery was late again and the box was damaged. "
    text = sentence * 2000  # ~24,000 tokens: far beyond the encoder's 512 positions
    long, head = classifier.classify([text, sentence * 30])
    # Truncation to the first 128 tokens: the long post reads exactly like its opening.
    assert long.sentiment_scores == head.sentiment_scores
    assert long.touchpoint == head.touchpoint
    assert math.isclose(sum(long.touchpoint_scores.values()), 1.0, abs_tol=1e-4)


def test_empty_batch(classifier) -> None:  # type: ignore[no-untyped-def]
    assert classifier.classify([]) == []
