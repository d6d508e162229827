"""The shipped model must stay above its targets on fixed, held-out slices.

Thresholds are measured values of the shipped model minus a small margin (see
models/MODEL_CARD.md for the measurements and the command). Retraining that lowers
quality below them fails here.
"""

from __future__ import annotations

import pytest

from models.data import load_touchpoints
from models.evaluate import touchpoint_report, tweeteval_report

# First 2,000 rows of TweetEval sentiment test: measured macro-recall minus a margin.
TWEETEVAL_SLICE = 2000
TWEETEVAL_SLICE_MIN_MACRO_RECALL = 0.67  # measured 0.689 (model g)
# Our dev split, the whole of it (the target).
TOUCHPOINT_DEV_MIN_MACRO_F1 = 0.75  # the issue target; measured 0.775 (model g)


@pytest.mark.slow
def test_sentiment_slice(classifier) -> None:  # type: ignore[no-untyped-def]
    report = tweeteval_report(classifier, "test", limit=TWEETEVAL_SLICE)
    assert report.n == TWEETEVAL_SLICE
    assert report.macro_recall >= TWEETEVAL_SLICE_MIN_MACRO_RECALL, report


@pytest.mark.slow
def test_touchpoint_dev(classifier) -> None:  # type: ignore[no-untyped-def]
    report = touchpoint_report(classifier, load_touchpoints("dev"))
    assert report.n > 200
    assert report.macro_f1 >= TOUCHPOINT_DEV_MIN_MACRO_F1, report.per_class_f1
