"""The touchpoint split is deterministic, deduplicated, stratified, and leak-free."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from models import TOUCHPOINTS
from models.data import (
    TOUCHPOINT_DIR,
    load_goemotions_sentiment,
    load_semeval_mapped,
    load_touchpoints,
    make_touchpoint_split,
)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def test_committed_split_is_clean() -> None:
    train, dev = load_touchpoints("train"), load_touchpoints("dev")
    assert len(train) > 0 and len(dev) > 0
    train_texts = {_norm(str(r["text"])) for r in train}
    dev_texts = {_norm(str(r["text"])) for r in dev}
    assert not train_texts & dev_texts, "dev leaks into train"
    assert len(train_texts) == len(train) and len(dev_texts) == len(dev), "duplicates in a split"
    assert {r["touchpoint"] for r in train} <= set(TOUCHPOINTS)
    # stratified ~75/25 for every touchpoint
    tr, dv = Counter(r["touchpoint"] for r in train), Counter(r["touchpoint"] for r in dev)
    for tp in tr:
        share = dv[tp] / (tr[tp] + dv[tp])
        assert 0.15 <= share <= 0.35, (tp, share)


def test_split_is_deterministic(tmp_path: Path) -> None:
    raw = TOUCHPOINT_DIR / "raw"
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert make_touchpoint_split(raw, a) == make_touchpoint_split(raw, b)
    for name in ("train.jsonl", "dev.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    # and equal to what is committed
    for name in ("train.jsonl", "dev.jsonl"):
        assert (a / name).read_bytes() == (TOUCHPOINT_DIR / name).read_bytes()


def test_split_dedups_and_drops_conflicts(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [
        {"text": "Late again", "touchpoint": "fulfilment"},
        {"text": "late   AGAIN", "touchpoint": "fulfilment"},
        {"text": "rude clerk", "touchpoint": "staff_interaction"},
        {"text": "Rude clerk", "touchpoint": "customer_support"},
        {"text": "", "touchpoint": "other"},
    ]
    (raw / "x.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    stats = make_touchpoint_split(raw, tmp_path, valid_touchpoints=TOUCHPOINTS)
    assert stats["train"] + stats["dev"] == 1
    assert stats["dropped_duplicates"] == 2
    assert stats["dropped_conflicts"] == 1
    assert stats["dropped_invalid"] == 1


def test_goemotions_mapping() -> None:
    ds = load_goemotions_sentiment("dev")
    assert len(ds) > 4000
    assert set(ds.labels) == {0, 1, 2}


def test_semeval_training_rows_take_their_aspects_touchpoint_and_skip_mixed_or_loose_sentences(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "semeval14_restaurants"
    folder.mkdir()
    rows = [
        ("1", "The pasta was cold.", "food", "negative"),
        ("2", "Our waiter forgot us.", "service", "negative"),
        ("3", "Lovely room, loud music.", "ambience", "negative"),
        ("4", "Great food, rude staff.", "food", "positive"),  # two touchpoints: dropped
        ("4", "Great food, rude staff.", "service", "negative"),
        ("5", "Will be back!", "anecdotes/miscellaneous", "positive"),  # too loose to train on: dropped
        ("6", "Tasty and cheap.", "food", "positive"),  # food + ambience: both product_experience, kept
        ("6", "Tasty and cheap.", "ambience", "positive"),
    ]
    lines = ["sentence_id\ttext\tcategory\tpolarity", *("\t".join(r) for r in rows)]
    (folder / "train_aspect_categories.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    texts, labels = load_semeval_mapped("train", tmp_path)
    assert dict(zip(texts, labels, strict=True)) == {
        "The pasta was cold.": "product_experience",
        "Our waiter forgot us.": "staff_interaction",
        "Lovely room, loud music.": "product_experience",
        "Tasty and cheap.": "product_experience",
    }
