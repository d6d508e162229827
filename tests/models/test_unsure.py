"""The calibrated "unsure" touchpoint: the runner-up is reported when the top two are close."""

from __future__ import annotations

import json
from pathlib import Path

from models.taxonomy import TOUCHPOINTS
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
    # A model trained now records the margin chosen on validation; one without (model h) has none.
    (tmp_path / "manifest.json").write_text(json.dumps({"touchpoint": {"unsure_margin": 0.2}}))
    assert shipped_unsure_margin(tmp_path) == 0.2
    assert shipped_unsure_margin(tmp_path / "nowhere") == 0.0
