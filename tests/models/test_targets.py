"""The shipped model must stay at or above the issue's targets on fixed, held-out data.

Sentiment is checked on the whole TweetEval test set (12,284 tweets, about two minutes
on two cores), because that is where the target is defined: a slice would either
need a floor below the target or fail on the slice's own noise. Touchpoints are
checked on the real-text set (731 real posts, labelled twice and adjudicated), which
issue 14 made the one that decides, and on the whole of our dev split as a floor
against regressions. Retraining that lowers quality below any of them fails here
(models/MODEL_CARD.md has the measurements and the command).
"""

from __future__ import annotations

import pytest

from models.data import load_touchpoints
from models.evaluate import touchpoint_report, tweeteval_report

# The issues' targets. Measured on model yrb (yrd in bfloat16, its shipped runtime on this CPU; on a CPU
# without bfloat16 units it runs yrd's float32 figures, in brackets): TweetEval test macro-recall 0.7016
# (0.7019; y and w the same, v: 0.7035, l: 0.7018), real-text touchpoint macro-F1 0.552 (the same; y: 0.498,
# v: 0.499, l: 0.512, h: 0.421), real-text sentiment macro-F1 0.729 (the same; v: 0.725, l: 0.689), real-text
# magic precision 0.882 of 17 called (0.889 of 18; yrm: 0.706, yr: 0.649, w: 0.647, v: 0.655, p: 0.482), dev
# touchpoint macro-F1 0.722 (0.718; y: 0.708, v: 0.712, l: 0.725, h: 0.775).
TWEETEVAL_TEST_MIN_MACRO_RECALL = 0.70
# Issue 14 aims at 0.70 on the real-text set; this floor holds what has been reached so far. It was 0.50
# for model l; model p's sentiment layers (which the touchpoint heads read) cost 0.014 of it for 0.036 of
# real-text sentiment macro-F1 and six more real misery posts found (models/MODEL_CARD.md, "Model p"), and
# 0.49 until model yr's relevance gate sent chatter to `other` (0.498 -> 0.552).
REALSET_TOUCHPOINT_MIN_MACRO_F1 = 0.54
# The gate's gain is in the chatter's own register; on the sources no part of the model learnt from
# (SemEval reviews, TWCS tweets to brands, the demo) it cost y's 0.556 some: yr 0.543.
REALSET_UNSEEN_MIN_TOUCHPOINT_ACCURACY = 0.53
# Issue 14: sentiment that carries over to real customers (TweetEval alone gave 0.689 on model l).
REALSET_SENTIMENT_MIN_MACRO_F1 = 0.72
# Issue 14 aims at 0.80: a magic moment shared with staff must be one. A validation-chosen floor on the
# moment head's P(magic) (models.magic) took it from p's 0.482 (56 called) to 0.636 (u, 33) and 0.655 (v, 29);
# refusing magic to posts the relevance gate finds off topic took yr's 0.649 (37) to 0.706 (yrm, 34), and
# choosing the floor on the real validation set with its delight supplement (51 magic posts, not 12) took
# it to 0.889 (yrd, floor 0.9, 18 called; yrb in bfloat16: 0.882, 17), at the cost of recall (0.51 -> 0.34,
# 0.32 in bfloat16). At least 15 posts called
# magic, so that precision is not bought by calling (nearly) nothing magic.
REALSET_MAGIC_MIN_CALLED = 15
REALSET_MAGIC_MIN_PRECISION = 0.80
# Our dev split is written in our own voice and flatters the model (issue 14); it was 0.75 until the
# real-text set replaced it as the touchpoint target. It stays as a floor against regressions: one
# stack of layers cost 0.03 on it, the BANKING77 queries 0.02, and both gained on real text.
TOUCHPOINT_DEV_MIN_MACRO_F1 = 0.70


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


@pytest.mark.slow
def test_touchpoint_real_text_set(classifier) -> None:  # type: ignore[no-untyped-def]
    from models.evaluate import realset_report

    report = realset_report(classifier)
    if isinstance(report, str) or report.skipped:
        pytest.skip(report if isinstance(report, str) else f"real-text sources missing: {report.skipped}")
    assert report.n == 731
    assert report.touchpoint_macro_f1 >= REALSET_TOUCHPOINT_MIN_MACRO_F1, report.touchpoint_per_class_f1
    assert report.sentiment_macro_f1 >= REALSET_SENTIMENT_MIN_MACRO_F1, report
    assert report.magic_precision >= REALSET_MAGIC_MIN_PRECISION and report.magic_called >= REALSET_MAGIC_MIN_CALLED, (
        report
    )
    # recovery stories the flag rule would read as a bad moment: 4 of 13 on model l, 2 on p and v, none on w
    assert report.recovery_stories == 13 and report.recovery_bad_moments == 0, report
    # per source (`moments eval` prints it, so a gain in a source the model learnt from shows as such)
    per_source = report.touchpoint_accuracy_per_source
    assert set(per_source) == set(report.per_source)
    right = sum(per_source[source] * n for source, n in report.per_source.items())
    assert right / report.n == pytest.approx(report.touchpoint_accuracy)
    # the shipped model learnt from BANKING77 train, and its relevance gate from GoEmotions and TweetEval
    # train chatter; its accuracy elsewhere is reported apart
    assert report.learnt_from == ["banking77", "goemotions", "tweeteval"]
    unseen = {s: n for s, n in report.per_source.items() if s not in report.learnt_from}
    right_unseen = sum(per_source[s] * n for s, n in unseen.items())
    assert report.touchpoint_accuracy_unseen == pytest.approx(right_unseen / sum(unseen.values()))
    assert report.touchpoint_accuracy_unseen >= REALSET_UNSEEN_MIN_TOUCHPOINT_ACCURACY, per_source


@pytest.mark.slow
def test_no_real_recovery_story_would_open_a_flag(classifier) -> None:  # type: ignore[no-untyped-def]
    # Issue 14: a customer writing again to thank the brand for fixing it is never sent a care agent.
    from models.evaluate import recovery_set_report

    report = recovery_set_report(classifier)
    if isinstance(report, str) or report.skipped:
        pytest.skip(report if isinstance(report, str) else f"recovery-set sources missing: {report.skipped}")
    assert report.n == 137 and report.recovery_stories >= 10
    assert report.recovery_bad_moments == 0, report
    # of 59 posts labelled positive: model w 2, y 1 ("Thanks for the outstanding assistance, I get it, it is your
    # company that takes the heat ...", which the moment head reads as misery)
    assert report.positive_bad_moments <= 1, report
