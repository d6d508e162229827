"""A review's own rating bounds the text model's verdict (``models.classifier.bound_by_rating``, ``rating_scale``)."""

from __future__ import annotations

import pytest

from models.classifier import bound_by_rating, rating_scale
from moments.records import Classification

STARS = (1.0, 5.0)


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
    bounded = bound_by_rating(_result(0.71, 0.24, 0.05, "misery"), 5, STARS)
    assert bounded.sentiment == "neutral"
    assert bounded.sentiment_scores == pytest.approx(
        {"negative": 0.0, "neutral": 0.24 / 0.29, "positive": 0.05 / 0.29}, abs=1e-6
    )
    assert bounded.moment == "neutral"
    assert bounded.severity == 0.0
    # the text's other judgements are kept
    assert (bounded.touchpoint, bounded.confidence, bounded.lang) == ("digital_experience", 0.8, "en")


def test_a_four_star_review_can_turn_positive() -> None:
    bounded = bound_by_rating(_result(0.5, 0.2, 0.3), 4, STARS)
    assert bounded.sentiment == "positive"
    assert bounded.sentiment_scores["positive"] == pytest.approx(0.6)


def test_a_low_rating_is_never_positive_or_magic() -> None:
    for stars in (1, 2):
        bounded = bound_by_rating(_result(0.1, 0.2, 0.7, "magic"), stars, STARS)
        assert bounded.sentiment == "neutral" and bounded.moment == "neutral"
        assert bounded.sentiment_scores["positive"] == 0.0
    # misery stays misery: the stars agree with the text
    misery = _result(0.8, 0.15, 0.05, "misery")
    bounded = bound_by_rating(misery, 1, STARS)
    assert bounded.moment == "misery" and bounded.severity == pytest.approx(0.5 + 0.5 * 0.8 / 0.95)


def test_a_text_sure_only_of_the_banned_class_falls_to_neutral() -> None:
    bounded = bound_by_rating(_result(1.0, 0.0, 0.0, "misery"), 5, STARS)
    assert bounded.sentiment == "neutral" and bounded.sentiment_scores["neutral"] == 1.0


def test_the_scale_comes_from_the_source_or_the_review() -> None:
    assert rating_scale("appstore") == STARS
    # schema.org's defaults when the review gives no scale, its own scale when it does
    assert rating_scale("jsonld", {"best_rating": None, "worst_rating": None}) == (1.0, 5.0)
    assert rating_scale("jsonld", {"best_rating": "10", "worst_rating": 0}) == (0.0, 10.0)
    assert rating_scale("jsonld", {"best_rating": "ten"}) is None
    assert rating_scale("jsonld", {"best_rating": 1, "worst_rating": 5}) is None
    # an import's rating column has no known scale
    assert rating_scale("import") is None and rating_scale("reddit") is None


def test_a_ten_point_review_is_bounded_on_its_own_scale() -> None:
    ten = rating_scale("jsonld", {"best_rating": 10, "worst_rating": 0})
    complaint_words = _result(0.6, 0.3, 0.1, "misery")
    assert bound_by_rating(complaint_words, 9, ten).sentiment == "neutral"
    assert bound_by_rating(complaint_words, 5, ten) == complaint_words  # 5 of 10 is the middle, not 5 stars
    assert bound_by_rating(_result(0.1, 0.2, 0.7), 2, ten).sentiment == "neutral"


@pytest.mark.parametrize(
    ("rating", "scale"),
    [
        (3, STARS),  # a middle rating says nothing either way
        (None, STARS),
        (0, STARS),  # off the scale
        (7, STARS),
        (5, None),  # no known scale
    ],
)
def test_a_middle_missing_or_unscaled_rating_leaves_the_result_alone(
    rating: float | None, scale: tuple[float, float] | None
) -> None:
    result = _result(0.71, 0.24, 0.05, "misery")
    assert bound_by_rating(result, rating, scale) == result
