"""The calibrated "unsure" touchpoint: the runner-up is reported when the top two are close."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.data import load_touchpoints
from models.taxonomy import TOUCHPOINTS
from models.train import unsure_margin
from models.unsure import shipped_unsure_margin, touchpoint_alternative
from moments.records import Classification


def _verdict(first: float, second: float) -> Classification:
    rest = (1.0 - first - second) / (len(TOUCHPOINTS) - 2)
    scores = {tp: rest for tp in TOUCHPOINTS}
    scores["fulfilment"], scores["waiting_queues"] = first, second
    return Classification(
        sentiment="negative",
        sentiment_scores={"negative": 0.8, "neutral": 0.15, "positive": 0.05},
        touchpoint="fulfilment",
        touchpoint_scores=scores,
        moment="neutral",
        severity=0.4,
        model_version="test",
    )


def test_close_top_two_report_the_runner_up() -> None:
    alt = touchpoint_alternative(_verdict(0.40, 0.35), margin=0.1)
    assert alt is not None
    assert alt.touchpoint == "waiting_queues"
    assert (alt.score, alt.top_score) == (0.35, 0.40)


def test_a_clear_winner_has_no_alternative() -> None:
    assert touchpoint_alternative(_verdict(0.70, 0.10), margin=0.1) is None
    assert touchpoint_alternative(_verdict(0.40, 0.35), margin=0.0) is None


def test_the_margin_comes_from_the_manifest(tmp_path: Path) -> None:
    # A model records the margin chosen on validation; a folder without a manifest has none.
    (tmp_path / "manifest.json").write_text(json.dumps({"touchpoint": {"unsure_margin": 0.2}}))
    assert shipped_unsure_margin(tmp_path) == 0.2
    assert shipped_unsure_margin(tmp_path / "nowhere") == 0.0


def test_the_shipped_margin_is_the_rule_on_the_dev_split(classifier) -> None:  # type: ignore[no-untyped-def]
    """The shipped model's margin is what models.train.unsure_margin gives on our dev split, and
    below it the top guess is right no more than half the time (so the runner-up earns its place)."""
    dev = load_touchpoints("dev")
    results = classifier.classify([str(row["text"]) for row in dev])
    ids = list(results[0].touchpoint_scores)
    probs = np.array([[r.touchpoint_scores[i] for i in ids] for r in results])
    truth = np.array([ids.index(str(row["touchpoint"])) for row in dev])
    margin, report = unsure_margin(probs, truth)
    assert margin > 0
    assert shipped_unsure_margin() == margin == classifier.unsure_margin
    assert report["top1_accuracy_unsure"] <= 0.5 < report["top1_accuracy_sure"]
    assert report["top2_accuracy_unsure"] > report["top1_accuracy_unsure"]
