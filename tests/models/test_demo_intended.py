"""The demo corpus against the labels we meant when we wrote it (models/data/realset/demo_intended.jsonl).

A care agent sent to a delighted customer is the worst flag: no demo post written as
praise (intended sentiment positive, moment magic, or a recovery story) may read as a
*bad moment*, the first condition of every flag (``flows.flagging``: moment misery, or
negative with P >= ``min_negative_probability``; mirrored by
:func:`models.evaluate.is_bad_moment`). And every demo post the classifier does read as a
bad moment must be one we wrote as a negative post, so the demo's flags are real misery.

The posts go through :func:`models.classify_posts`, as in the flows, so an App Store review's
own stars (from the recorded feed the demo crawls) bound its sentiment as they do there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models import classify_posts
from models.evaluate import is_bad_moment
from models.realset import DEMO_INTENDED_PATH, ITEMS_PATH
from moments.records import Classification, Post

APPSTORE_RECORDING = Path(__file__).resolve().parents[2] / "crawlers" / "recorded" / "demo" / "appstore.json"


def _app_store_stars() -> dict[str, float]:
    """Review id -> stars, from the recorded App Store feed the demo crawls."""
    stars = {}
    for interaction in json.loads(APPSTORE_RECORDING.read_text(encoding="utf-8"))["interactions"]:
        for entry in (interaction["response"].get("json") or {}).get("feed", {}).get("entry", []):
            if "im:rating" in entry:
                stars[entry["id"]["label"]] = float(entry["im:rating"]["label"])
    return stars


def _classified(pairs: list[tuple[str, dict[str, object]]], classifier) -> list[Classification]:  # type: ignore[no-untyped-def]
    """Each demo text as the post it came from (source, and stars for App Store reviews), classified."""
    stars = _app_store_stars()
    posts = []
    for text, labels in pairs:
        source, native_id = str(labels["post_id"]).split(":", 1)
        rating = stars[native_id] if source == "appstore" else None
        posts.append(
            Post(
                id=str(labels["post_id"]),
                source=source,
                native_id=native_id,
                text=text,
                rating=rating,
                crawled_at=datetime(2026, 11, 20, tzinfo=UTC),
            )
        )
    return [post.classification for post in classify_posts(posts, classifier) if post.classification]


def _demo() -> list[tuple[str, dict[str, object]]]:
    intended = {}
    for line in DEMO_INTENDED_PATH.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            intended[row["item_id"]] = row
    pairs = []
    for line in ITEMS_PATH.read_text(encoding="utf-8").splitlines():
        item = json.loads(line) if line.strip() else None
        if item and item["source"] == "demo":
            pairs.append((str(item["text"]), intended[item["item_id"]]))
    return pairs


def _is_praise(labels: dict[str, object]) -> bool:
    return labels["sentiment"] == "positive" or labels["moment"] == "magic" or bool(labels["recovery_story"])


STILL_OPEN = (
    "issue 14 open: model yrb (shipped; w's network, in bfloat16) still reads 1 praise post as a bad moment "
    "('Changed my Northwind flight to a day earlier in the app: $0 fare difference, no change fee'; the "
    "adapters read a flight change as a complaint, p_neg 0.63; 300 more written rows of the kind and three "
    "more epochs on them did not turn it, candidates z-z6; MODEL_CARD.md, Known failure modes); w's contrast "
    "rows settled 'Credit where due: after my rant yesterday ...', the stars and the recovery detector the "
    "rest; strict, so a model that fixes it turns this red"
)


def test_the_demo_corpus_has_praise_and_misery() -> None:
    pairs = _demo()
    assert len(pairs) >= 80
    assert sum(_is_praise(labels) for _, labels in pairs) >= 20
    assert sum(labels["moment"] == "misery" for _, labels in pairs) >= 10


@pytest.mark.xfail(
    strict=True,
    reason=STILL_OPEN,
)
def test_no_praise_reads_as_a_bad_moment(classifier) -> None:  # type: ignore[no-untyped-def]
    pairs = [(text, labels) for text, labels in _demo() if _is_praise(labels)]
    results = _classified(pairs, classifier)
    wrong = [
        f"{r.sentiment} p_neg={r.sentiment_scores['negative']:.2f} {r.moment}: {text[:80]}"
        for (text, _), r in zip(pairs, results, strict=True)
        if is_bad_moment(r) or r.moment == "misery" or r.sentiment == "negative"
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.xfail(
    strict=True,
    reason=STILL_OPEN,
)
def test_bad_moments_are_posts_written_as_negative(classifier) -> None:  # type: ignore[no-untyped-def]
    pairs = _demo()
    results = _classified(pairs, classifier)
    flagged = [(text, labels) for (text, labels), r in zip(pairs, results, strict=True) if is_bad_moment(r)]
    assert flagged, "the demo must still find its misery"
    wrong = [
        f"{labels['sentiment']}/{labels['moment']}: {text[:80]}"
        for text, labels in flagged
        if labels["sentiment"] != "negative"
    ]
    assert not wrong, "\n".join(wrong)
    # And the clear misery we wrote is found: most intended-misery posts read as bad moments.
    misery = [r for (_, labels), r in zip(pairs, results, strict=True) if labels["moment"] == "misery"]
    assert sum(is_bad_moment(r) for r in misery) >= 0.8 * len(misery)


def test_no_app_store_review_written_as_praise_is_a_bad_moment(classifier) -> None:  # type: ignore[no-untyped-def]
    # The part of the demo's praise the stars settle: 4-5 star reviews whose text the model reads as a
    # complaint ("Easy rebooking during the storm. Flight got cancelled and ...", 5 stars).
    reviews = [(t, labels) for t, labels in _demo() if str(labels["post_id"]).startswith("appstore:")]
    praise = [(t, labels) for t, labels in reviews if _is_praise(labels)]
    assert len(praise) >= 5
    # The text model alone (before the recovery detector and the stars) misreads some of it, so the
    # stars are what this test checks.
    texts = [t for t, _ in praise]
    text_model = classifier.sentiment_probs(classifier.encode(texts), texts)
    assert (text_model.argmax(1) == 0).any(), "the text model alone misreads some of this praise"
    results = _classified(praise, classifier)
    wrong = [t[:80] for (t, _), r in zip(praise, results, strict=True) if is_bad_moment(r) or r.sentiment == "negative"]
    assert not wrong, wrong
    # and the stars do not hide the reviews written as misery
    misery = [(t, labels) for t, labels in reviews if labels["moment"] == "misery"]
    assert misery and all(is_bad_moment(r) for r in _classified(misery, classifier))
