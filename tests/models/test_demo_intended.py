"""The demo corpus against the labels we meant when we wrote it (models/data/realset/demo_intended.jsonl).

A care agent sent to a delighted customer is the worst flag: no demo post written as
praise (intended sentiment positive, moment magic, or a recovery story) may read as a
*bad moment*, the first condition of every flag (``flows.flagging``: moment misery, or
negative with P >= ``min_negative_probability``; mirrored by
:func:`models.evaluate.is_bad_moment`). And every demo post the classifier does read as a
bad moment must be one we wrote as a negative post, so the demo's flags are real misery.
"""

from __future__ import annotations

import json

import pytest

from models.evaluate import is_bad_moment
from models.realset import DEMO_INTENDED_PATH, ITEMS_PATH


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


def test_the_demo_corpus_has_praise_and_misery() -> None:
    pairs = _demo()
    assert len(pairs) >= 80
    assert sum(_is_praise(labels) for _, labels in pairs) >= 20
    assert sum(labels["moment"] == "misery" for _, labels in pairs) >= 10


@pytest.mark.xfail(
    strict=True,
    reason="issue 14 open: model l (shipped), h and candidates i, k all read recovery stories as negative "
    "(MODEL_CARD.md, Known failure modes); strict, so a model that fixes it turns this red until it is unmarked",
)
def test_no_praise_reads_as_a_bad_moment(classifier) -> None:  # type: ignore[no-untyped-def]
    pairs = [(text, labels) for text, labels in _demo() if _is_praise(labels)]
    results = classifier.classify([text for text, _ in pairs])
    wrong = [
        f"{r.sentiment} p_neg={r.sentiment_scores['negative']:.2f} {r.moment}: {text[:80]}"
        for (text, _), r in zip(pairs, results, strict=True)
        if is_bad_moment(r) or r.moment == "misery" or r.sentiment == "negative"
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.xfail(
    strict=True,
    reason="issue 14 open: model l (shipped), h and candidates i, k all read recovery stories as negative "
    "(MODEL_CARD.md, Known failure modes); strict, so a model that fixes it turns this red until it is unmarked",
)
def test_bad_moments_are_posts_written_as_negative(classifier) -> None:  # type: ignore[no-untyped-def]
    pairs = _demo()
    results = classifier.classify([text for text, _ in pairs])
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
