"""``python -m models.train --feedback FILE``: the care team's corrections move the touchpoint models.

Heads only, on a slice of our training posts, so it runs in seconds: the same
:func:`models.train.train_touchpoints` the full run calls, once without and once with
a handful of corrections in the format ``moments feedback export`` writes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from models.classifier import softmax
from models.data import load_touchpoints
from models.encoder import SplitEncoder, Tokenizer
from models.taxonomy import TOUCHPOINTS
from models.train import feedback_sentiment, feedback_touchpoints, main, read_feedback, train_touchpoints

# Loyalty-miles complaints: our taxonomy has no loyalty touchpoint, and a brand decides
# they belong to price_billing. Six corrections say so.
CORRECTIONS = [
    "my frequent flyer miles from last month never posted",
    "where are the miles for my flight to Boston? still not credited",
    "lost all my loyalty points when my status expired",
    "miles still missing from my account after three trips",
    "the points from my hotel stay never showed up in the program",
    "why did my reward points disappear overnight",
]
SIMILAR = [
    "my miles for the Denver trip were never credited",
    "loyalty points from my stay are still missing",
]


def _write_feedback(path: Path) -> None:
    rows = [
        {
            "text": t,
            "post_id": f"x:{i}",
            "label_kind": "touchpoint",
            "label": "price_billing",
            "reason": "wrong touchpoint: billing",
            "flag_id": f"post:x:{i}",
            "at": "2026-11-02T10:15:00Z",
        }
        for i, t in enumerate(CORRECTIONS)
    ]
    rows.append({"text": "thanks, sorted now", "post_id": "x:s", "label_kind": "sentiment", "label": "not_negative"})
    rows.append({"text": "buy followers cheap", "post_id": "x:t", "label_kind": "spam", "label": "spam"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def test_feedback_rows_are_read_by_kind(tmp_path: Path) -> None:
    path = tmp_path / "feedback.jsonl"
    _write_feedback(path)
    rows = read_feedback(path)
    assert [y for _, y in feedback_touchpoints(rows)] == [TOUCHPOINTS.index("price_billing")] * len(CORRECTIONS)
    assert feedback_sentiment(rows) == [("thanks, sorted now", 1)]  # not negative -> neutral


def test_a_bad_feedback_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "label_kind": "touchpoint"}\n', encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["--feedback", str(bad), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "line 1 needs string text, label_kind and label" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--feedback", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "out")])


@pytest.mark.slow
def test_a_handful_of_corrections_moves_similar_posts(tmp_path: Path) -> None:
    path = tmp_path / "feedback.jsonl"
    _write_feedback(path)
    encoder, tokenizer = SplitEncoder(trunk_layers=0), Tokenizer()
    train = load_touchpoints("train")[::3]  # a third of our posts: seconds, not minutes
    dev = load_touchpoints("dev")[::4]

    def fit(feedback: Path | None) -> np.ndarray:
        rows = read_feedback(feedback) if feedback else []
        args = argparse.Namespace(
            seed=13,
            banking77=False,
            data=None,
            feedback_rows=rows,
            feedback_weight=5.0,
            touchpoint_hparams=(2.0, 64.0, 0.5),  # the shipped model's choice: no search, seconds
        )
        tp = train_touchpoints(args, encoder, tokenizer, train, dev)
        from models.train import embed_texts

        feats, _ = embed_texts(encoder, tokenizer, SIMILAR)
        assert tp.lexical is not None
        probs = (1 - tp.lexical_share) * softmax(feats @ tp.weight.T + tp.bias)
        return probs + tp.lexical_share * softmax(tp.lexical.logits(SIMILAR))

    before, after = fit(None), fit(path)
    billing = TOUCHPOINTS.index("price_billing")
    assert (after[:, billing] > before[:, billing] + 0.2).all(), (before[:, billing], after[:, billing])
    assert (after.argmax(1) == billing).all()
