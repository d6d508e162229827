"""The calibrated "unsure" touchpoint: when the top two touchpoints are close, report both.

A :class:`moments.records.Classification` carries every touchpoint's score
(``touchpoint_scores``), so whether a post is unsure can be read back from the record
itself, without the model: :func:`touchpoint_alternative` returns the runner-up and its
score when the margin between the top two is below the shipped model's
``touchpoint.unsure_margin`` (chosen on validation data at training time, see
``models/MODEL_CARD.md``). A flag can then show "fulfilment 0.41 / waiting_queues 0.37".

No torch import here: flows and triage can call it cheaply.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from moments.records import Classification

_ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


class Alternative(NamedTuple):
    """The runner-up touchpoint of an unsure post, with both scores."""

    touchpoint: str
    score: float
    top_score: float


@lru_cache(maxsize=8)
def _margin_of(manifest: Path) -> float:
    if not manifest.is_file():
        return 0.0
    data = json.loads(manifest.read_text(encoding="utf-8"))
    return float(data.get("touchpoint", {}).get("unsure_margin", 0.0))


def shipped_unsure_margin(artifacts_dir: Path | None = None) -> float:
    """The margin of the model in ``artifacts_dir`` (default ``$MOMENTS_ARTIFACTS`` or the shipped one); 0 if none."""
    env = os.environ.get("MOMENTS_ARTIFACTS")
    folder = artifacts_dir or (Path(env) if env else _ARTIFACTS)
    return _margin_of(folder / "manifest.json")


def touchpoint_alternative(classification: Classification, margin: float | None = None) -> Alternative | None:
    """The second touchpoint when it is within ``margin`` of the first, else ``None``.

    Args:
        classification: A classified post's verdict.
        margin: Top-1 minus top-2 score below which the post is unsure (default: the
            shipped model's validated ``unsure_margin``).
    """
    margin = shipped_unsure_margin() if margin is None else margin
    scores = sorted(classification.touchpoint_scores.items(), key=lambda kv: kv[1], reverse=True)
    if len(scores) < 2 or margin <= 0:
        return None
    (_, first), (second_id, second) = scores[0], scores[1]
    if first - second >= margin:
        return None
    return Alternative(second_id, second, first)
