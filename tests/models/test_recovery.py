"""The recovery detector (models.recovery): its rule, its data, and the shipped model's use of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models import data as D
from models.classifier import RawOutputs
from models.encoder import Tokenizer
from models.realset import (
    ITEMS_PATH,
    REALVAL_ITEMS_PATH,
    REALVAL_LABELS_PATH,
    RECOVERY_ITEMS_PATH,
    RECOVERY_LABELS_PATH,
    inconsistencies,
    load_labelled,
    text_sha256,
)
from models.recovery import (
    DETECTOR_FILES,
    MAX_MISERY_DETECTED,
    MAX_TWEETEVAL_VAL_COST,
    gated,
    recovery_features,
    shift_to_positive,
    written_rows,
)
from models.textprep import last_sentence_span


def test_shift_moves_the_detected_share_of_the_mass_to_positive_and_leaves_the_rest() -> None:
    sent = np.array([[0.88, 0.10, 0.02], [0.70, 0.20, 0.10], [0.10, 0.20, 0.70]])
    p = np.array([0.9, 0.5, 0.95])
    shifted, detected = shift_to_positive(sent, p, threshold=0.75)
    assert detected.tolist() == [True, False, True]
    assert shifted[0].argmax() == 2 and shifted[0] == pytest.approx(0.1 * sent[0] + np.array([0, 0, 0.9]))
    assert shifted[1] == pytest.approx(sent[1])  # under the threshold: untouched
    assert shifted.sum(1) == pytest.approx(np.ones(3))
    assert sent[0, 0] == 0.88  # the input is not modified


def test_the_moment_heads_misery_closes_the_gate() -> None:
    p = np.array([0.9, 0.9, 0.9])
    assert gated(p, np.array([0, 1, 2])).tolist() == [0.0, 0.9, 0.9]
    assert gated(p, None).tolist() == p.tolist()


@pytest.mark.parametrize(
    ("text", "last"),
    [
        ("@AppleSupport Restarting does resolve the issue. Thanks.", "Thanks"),
        (
            "Bag lost for 3 days. Then they drove it to my door! @brand #brand https://t.co/x",
            "Then they drove it to my door",
        ),
        ("one sentence, no full stop", "one sentence, no full stop"),
        ("Waited... and waited. #fail", "and waited"),
        ("#brand", "#brand"),  # nothing but a tag: the whole text
    ],
)
def test_the_last_sentence_leaves_out_trailing_tags_and_links(text: str, last: str) -> None:
    start, end = last_sentence_span(text)
    assert text[start:end] == last


def test_the_last_sentence_tokens_are_marked_and_special_tokens_never_are() -> None:
    text = "Flight cancelled. They found my seat in minutes!"
    ids, marks = Tokenizer().encode_with_spans([text], [last_sentence_span(text)])
    assert len(ids[0]) == len(marks[0])
    assert marks[0][0] == 0 and marks[0][-1] == 0  # [CLS], [SEP]
    tokens = Tokenizer()._tok.encode(text).tokens
    assert [t for t, m in zip(tokens, marks[0], strict=True) if m] == ["they", "found", "my", "seat", "in", "minutes"]


def test_detector_inputs_are_the_named_outputs_side_by_side() -> None:
    raw = RawOutputs(np.zeros((2, 3)), None, np.ones((2, 4)), np.full((2, 2), 2.0), np.full((2, 2), 3.0))
    assert recovery_features(raw).tolist() == [[1, 1, 1, 1, 2, 2]] * 2
    assert recovery_features(raw, ("features", "sentiment_pool", "last_sentence_pool"))[0, -2:].tolist() == [3, 3]
    with pytest.raises(ValueError, match="last sentence"):
        recovery_features(RawOutputs(np.zeros((1, 3)), None, np.ones((1, 4)), np.ones((1, 2))), ("last_sentence_pool",))


def test_written_rows_split_every_file_on_its_own_and_keep_the_guides_rules() -> None:
    train, val = D.load_recovery("train"), D.load_recovery("val")
    per_file = [D.read_jsonl(path) for path in D.RECOVERY_FILES]
    assert len(train) + len(val) == sum(len(rows) for rows in per_file)
    assert [r["text"] for r in val] == [r["text"] for rows in per_file for i, r in enumerate(rows) if i % 3 == 2]
    assert {r["text"] for r in train}.isdisjoint(r["text"] for r in val)
    for row in train + val:
        assert not inconsistencies(row), row["text"]
    stories = [r for r in train if r["recovery_story"]]
    assert len(stories) >= 100


def test_the_contrast_rows_keep_the_guides_rules_and_pair_praise_with_complaints() -> None:
    rows = D.read_jsonl(D.CONTRAST_PATH)
    assert D.CONTRAST_PATH not in D.RECOVERY_FILES  # no shipped model learnt from them
    assert len({r["text"] for r in rows}) == len(rows) >= 250
    for row in rows:
        assert not inconsistencies(row), row["text"]
    by_sentiment = {s: sum(r["sentiment"] == s for r in rows) for s in D.SENTIMENTS}
    assert min(by_sentiment.values()) >= 40, by_sentiment
    realset_texts = {json.loads(line).get("text") for line in ITEMS_PATH.read_text(encoding="utf-8").splitlines()}
    assert not realset_texts & {r["text"] for r in rows}
    assert not [r["text"] for r in rows if "northwind" in str(r["text"]).lower()]


def _committed_hashes(items: Path) -> set[str]:
    """The text hashes an evaluation set's items file commits (its texts may not be committed)."""
    return {json.loads(line)["sha256"] for line in items.read_text(encoding="utf-8").splitlines() if line}


def test_the_self_service_rows_keep_the_guides_rules_and_no_model_reads_them_by_default() -> None:
    rows = D.read_jsonl(D.SELF_SERVICE_PATH)
    assert D.SELF_SERVICE_PATH not in DETECTOR_FILES and D.SELF_SERVICE_PATH != D.CONTRAST_PATH
    assert len({r["text"] for r in rows}) == len(rows) >= 300
    for row in rows:
        assert not inconsistencies(row), row["text"]
        assert not row["recovery_story"], row["text"]  # nothing went wrong before: not a recovery
    by_sentiment = {s: sum(r["sentiment"] == s for r in rows) for s in D.SENTIMENTS}
    assert by_sentiment["positive"] >= 150 and by_sentiment["negative"] >= 100, by_sentiment
    assert not _committed_hashes(ITEMS_PATH) & {text_sha256(str(r["text"])) for r in rows}
    assert not [r["text"] for r in rows if "northwind" in str(r["text"]).lower()]


def test_written_rows_share_no_text_with_the_real_set_or_the_demo() -> None:
    evaluation = {json.loads(line).get("text") for line in ITEMS_PATH.read_text(encoding="utf-8").splitlines()}
    written = [str(r["text"]) for r in D.load_recovery("train") + D.load_recovery("val")]
    assert not evaluation & set(written)
    more = D.read_jsonl(D.MORE_RECOVERY_PATH)
    assert not any("northwind" in str(r["text"]).lower() for r in more), "the demo's brand"


THANKS = ("thank", "thanks", "cheers", "ta", "appreciate", "appreciated")


def _words(text: str) -> set[str]:
    return {w.strip(".,!?'\"()").lower() for w in text.split() if not w.startswith(("@", "#", "http"))} - {""}


def test_support_follow_ups_teach_the_detector_only_and_pair_fixes_with_polite_complaints() -> None:
    rows = D.read_jsonl(D.FOLLOW_UP_PATH)
    # The detector reads them; the sentiment fine-tune and its TF-IDF model (RECOVERY_FILES) do not.
    assert D.FOLLOW_UP_PATH in DETECTOR_FILES and D.FOLLOW_UP_PATH not in D.RECOVERY_FILES
    assert len(written_rows("train")) + len(written_rows("val")) == sum(len(D.read_jsonl(p)) for p in DETECTOR_FILES)
    assert len({r["text"] for r in rows}) == len(rows) >= 300
    for row in rows:
        assert not inconsistencies(row), row["text"]
    fixes = [r for r in rows if r["recovery_story"]]
    polite_complaints = [r for r in rows if r["sentiment"] == "negative" and _words(str(r["text"])) & set(THANKS)]
    # The point of the file: "that fixed it, thanks" is a recovery story, "still broken, thanks" is not.
    assert len(fixes) >= 120 and len(polite_complaints) >= 30, (len(fixes), len(polite_complaints))
    assert not any("northwind" in str(r["text"]).lower() for r in rows), "the demo's brand"


def test_support_follow_ups_share_no_text_with_any_evaluation_set() -> None:
    written = {text_sha256(str(r["text"])) for r in D.read_jsonl(D.FOLLOW_UP_PATH)}
    for items in (ITEMS_PATH, RECOVERY_ITEMS_PATH, REALVAL_ITEMS_PATH):
        assert not written & _committed_hashes(items), items
    # Nor a near copy of a real support-thread post (read from the source datasets when they are here).
    real = []
    for labels, items in ((RECOVERY_LABELS_PATH, RECOVERY_ITEMS_PATH), (REALVAL_LABELS_PATH, REALVAL_ITEMS_PATH)):
        pairs, loaded = load_labelled(None, labels=labels, items=items)
        if loaded.skipped or not pairs:
            pytest.skip(f"real-set sources missing: {loaded.skipped}")
        real += [_words(str(item.text)) for item, _ in pairs if item.source == "twcs"]
    assert len(real) == 262
    for row in D.read_jsonl(D.FOLLOW_UP_PATH):
        mine = _words(str(row["text"]))
        for theirs in real:
            overlap = len(mine & theirs) / max(1, len(mine | theirs))
            assert overlap < 0.5, (row["text"], sorted(theirs))


def test_a_model_without_a_detector_decides_on_the_text_model_alone(classifier) -> None:  # type: ignore[no-untyped-def]
    texts = ["Northwind refunded my cancelled trip in 2 days without asking", "Lost my bag, nobody answers"]
    raw = classifier.encode(texts)
    saved = classifier.recovery_w
    try:
        classifier.recovery_w = None
        sent, detected = classifier.outcome_sentiment(raw, texts)
    finally:
        classifier.recovery_w = saved
    assert not detected.any()
    assert sent == pytest.approx(classifier.sentiment_probs(raw, texts))


def test_the_shipped_detector_was_chosen_within_its_tweeteval_budget(classifier) -> None:  # type: ignore[no-untyped-def]
    section = classifier.manifest.get("recovery")
    assert section is not None and classifier.recovery_w is not None, "the shipped model has a recovery detector"
    report = section["report"]
    chosen = report["chosen"]
    assert chosen["threshold"] == classifier.recovery_threshold
    cost = report["tweeteval_val_macro_recall_without"] - chosen["tweeteval_val_macro_recall"]
    assert cost <= MAX_TWEETEVAL_VAL_COST + 1e-9
    assert chosen["val_misery_detected"] <= report["max_misery_detected"] == MAX_MISERY_DETECTED
    assert set(section["files_sha256"]) == {path.name for path in DETECTOR_FILES}
    for path in DETECTOR_FILES:  # the shipped detector learnt from the files as committed
        assert section["files_sha256"][path.name] == D.sha256_file(path), path.name
    assert {(row["C"], row["threshold"]) for row in report["grid"]} >= {(chosen["C"], chosen["threshold"])}


def test_the_detector_moves_a_recovery_story_to_magic_and_leaves_a_complaint(classifier) -> None:  # type: ignore[no-untyped-def]
    # Held-out rows of every written file the detector reads (it never trained on them): what it moved, it
    # made magic. The look-alike misery rows are where it can hide a customer in trouble; the bound is
    # the one its fit keeps (MAX_MISERY_DETECTED). Model y: 4 of 63 (all in stories/more_stories, whose
    # 33 gave w 2); "Thanks for the 'help'" sarcasm and failed fixes are what it still takes for recoveries.
    val = written_rows("val")
    texts = [str(r["text"]) for r in val]
    raw = classifier.encode(texts)
    _, detected = classifier.outcome_sentiment(raw, texts)
    results = classifier.classify(texts)
    assert detected.any()
    for row, result, hit in zip(val, results, detected, strict=True):
        if hit and result.sentiment == "positive":
            assert result.moment == "magic", row["text"]
    stories = np.array([bool(r["recovery_story"]) for r in val])
    misery = np.array([r["moment"] == "misery" for r in val])
    assert detected[stories].mean() > 0.4  # it finds recovery stories ...
    assert misery.sum() >= 60
    assert detected[misery].mean() <= MAX_MISERY_DETECTED  # ... and leaves written misery alone


def test_the_last_sentence_pool_is_computed_only_when_asked_or_read(classifier) -> None:  # type: ignore[no-untyped-def]
    texts = ["Flight cancelled. They found my seat in minutes!", "fine"]
    assert "last_sentence_pool" not in classifier.recovery_inputs  # the shipped detector: two inputs
    assert classifier.encode(texts).last_sentence_pooled is None
    raw = classifier.encode(texts, last_sentence=True)
    assert raw.last_sentence_pooled is not None and raw.last_sentence_pooled.shape == raw.sentiment_pooled.shape
    # Two sentences: the last one's pool is not the whole post's.
    assert not np.allclose(raw.last_sentence_pooled[0], raw.sentiment_pooled[0], atol=1e-3)
