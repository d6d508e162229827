"""A review's own star rating bounds the text model's verdict (``models.classifier.bound_by_rating``)."""

from __future__ import annotations

import pytest

from models.classifier import bound_by_rating
from moments.records import Classification


def _result(neg: float, neu: float, pos: float, moment: str = "neutral") -> Classification:
    return Classification(
        sentiment=("negative", "neutral", "positive")[max(range(3), key=lambda i: (neg, neu, pos)[i])],
        sentiment_scores={"negative": neg, "neutral": neu, "positive": pos},
        touchpoint="digital_experience",
        touchpoint_scores={"digital_experience": 1.0},
        moment=moment,  # type: ignore[arg-type]
        severity=0.5 + 0.5 * neg if moment == "misery" else 0.5 * neg,
        confidence=0.8,
        lang="en",
        model_version="test",
    )


def test_a_five_star_review_read_as_misery_is_neither_negative_nor_misery() -> None:
    bounded = bound_by_rating(_result(0.71, 0.24, 0.05, "misery"), "appstore", 5)
    assert bounded.sentiment == "neutral"
    assert bounded.sentiment_scores == pytest.approx(
        {"negative": 0.0, "neutral": 0.24 / 0.29, "positive": 0.05 / 0.29}, abs=1e-6
    )
    assert bounded.moment == "neutral"
    assert bounded.severity == 0.0
    # the text's other judgements are kept
    assert (bounded.touchpoint, bounded.confidence, bounded.lang) == ("digital_experience", 0.8, "en")


def test_a_four_star_review_can_turn_positive() -> None:
    bounded = bound_by_rating(_result(0.5, 0.2, 0.3), "appstore", 4)
    assert bounded.sentiment == "positive"
    assert bounded.sentiment_scores["positive"] == pytest.approx(0.6)


def test_a_low_rating_is_never_positive_or_magic() -> None:
    for stars in (1, 2):
        bounded = bound_by_rating(_result(0.1, 0.2, 0.7, "magic"), "appstore", stars)
        assert bounded.sentiment == "neutral" and bounded.moment == "neutral"
        assert bounded.sentiment_scores["positive"] == 0.0
    # misery stays misery: the stars agree with the text
    misery = _result(0.8, 0.15, 0.05, "misery")
    bounded = bound_by_rating(misery, "appstore", 1)
    assert bounded.moment == "misery" and bounded.severity == pytest.approx(0.5 + 0.5 * 0.8 / 0.95)


def test_a_text_sure_only_of_the_banned_class_falls_to_neutral() -> None:
    bounded = bound_by_rating(_result(1.0, 0.0, 0.0, "misery"), "appstore", 5)
    assert bounded.sentiment == "neutral" and bounded.sentiment_scores["neutral"] == 1.0


@pytest.mark.parametrize(
    ("source", "rating"),
    [
        ("appstore", 3),  # a middle rating says nothing either way
        ("appstore", None),
        ("appstore", 0),  # not a star rating
        ("appstore", 7),  # off the scale
        ("jsonld", 5),  # scale not on the post: 5 of 10 is not 5 of 5
        ("reddit", 5),
    ],
)
def test_a_middle_missing_or_unknown_rating_leaves_the_result_alone(source: str, rating: float | None) -> None:
    result = _result(0.71, 0.24, 0.05, "misery")
    assert bound_by_rating(result, source, rating) == result
