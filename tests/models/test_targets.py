"""The shipped model must stay at or above the issue's targets on fixed, held-out data.

Sentiment is checked on the whole TweetEval test set (12,284 tweets, about two minutes
on two cores), because that is where the target is defined: a slice would either
need a floor below the target or fail on the slice's own noise. Touchpoints are
checked on the whole of our dev split. Retraining that lowers quality below either
target fails here (models/MODEL_CARD.md has the measurements and the command).
"""

from __future__ import annotations

import pytest

from models.data import load_touchpoints
from models.evaluate import touchpoint_report, tweeteval_report

# The targets. Measured on model h: TweetEval test macro-recall 0.7017, dev macro-F1 0.775.
TWEETEVAL_TEST_MIN_MACRO_RECALL = 0.70
TOUCHPOINT_DEV_MIN_MACRO_F1 = 0.75


@pytest.mark.slow
def test_sentiment_test_set(classifier) -> None:  # type: ignore[no-untyped-def]
    report = tweeteval_report(classifier, "test")
    assert report.n == 12284
    assert report.macro_recall >= TWEETEVAL_TEST_MIN_MACRO_RECALL, report


@pytest.mark.slow
def test_touchpoint_dev(classifier) -> None:  # type: ignore[no-untyped-def]
    report = touchpoint_report(classifier, load_touchpoints("dev"))
    assert report.n > 200
    assert report.macro_f1 >= TOUCHPOINT_DEV_MIN_MACRO_F1, report.per_class_f1
