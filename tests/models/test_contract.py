"""The output contract: every Classification is complete, consistent and in the taxonomy."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models import TOUCHPOINTS, classify_posts
from models.runtime import BATCH_JITTER
from moments.records import Classification, Post

TEXTS = [
    "Two hours on hold and nobody could tell me where my refund is. Never again.",
    "The crew on my flight to Lisbon were wonderful, thank you!",
    "Store opens at 9 tomorrow.",
    "the app logs me out every time I try to pay",
]


def _post(native_id: str, text: str, **extra: object) -> Post:
    return Post(
        id=f"test:{native_id}",
        source="test",
        native_id=native_id,
        text=text,
        crawled_at=datetime(2026, 1, 1, tzinfo=UTC),
        **extra,  # type: ignore[arg-type]
    )


def test_fields_and_scores(classifier) -> None:  # type: ignore[no-untyped-def]
    results = classifier.classify(TEXTS)
    assert len(results) == len(TEXTS)
    for result in results:
        assert isinstance(result, Classification)
        assert set(result.sentiment_scores) == {"negative", "neutral", "positive"}
        assert math.isclose(sum(result.sentiment_scores.values()), 1.0, abs_tol=1e-4)
        assert set(result.touchpoint_scores) == set(TOUCHPOINTS)
        assert math.isclose(sum(result.touchpoint_scores.values()), 1.0, abs_tol=1e-4)
        assert result.touchpoint in TOUCHPOINTS
        assert result.sentiment == max(result.sentiment_scores, key=result.sentiment_scores.__getitem__)
        assert result.touchpoint == max(result.touchpoint_scores, key=result.touchpoint_scores.__getitem__)
        assert result.moment in ("misery", "magic", "neutral")
        assert 0.0 <= result.severity <= 1.0
        assert result.confidence is not None and 0.0 <= result.confidence <= 1.0
        assert result.model_version == classifier.model_version
        # misery only on negative posts, magic only on positive ones
        if result.moment == "misery":
            assert result.sentiment == "negative"
        if result.moment == "magic":
            assert result.sentiment == "positive"


def test_obvious_cases(classifier) -> None:  # type: ignore[no-untyped-def]
    neg, pos = classifier.classify(TEXTS[:2])
    assert neg.sentiment == "negative"
    assert pos.sentiment == "positive"
    assert neg.severity > pos.severity


def test_batch_order_is_input_order(classifier) -> None:  # type: ignore[no-untyped-def]
    # Length bucketing sorts internally; results must come back in input order.
    texts = [*TEXTS, "ok", "a much longer post " * 20]
    together = classifier.classify(texts)
    alone = [classifier.classify([t])[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        assert a.sentiment == b.sentiment
        assert a.touchpoint == b.touchpoint
        jitter = BATCH_JITTER[classifier.runtime]  # the batch's shape moves bfloat16 sums a rounding step
        assert a.sentiment_scores["negative"] == pytest.approx(b.sentiment_scores["negative"], abs=jitter)


def test_classify_posts_keeps_fields(classifier) -> None:  # type: ignore[no-untyped-def]
    posts = [
        _post("1", TEXTS[0], brand=["northwind"], title="Awful", extra={"k": [1, 2]}, urls=["https://x.example"]),
        _post("2", TEXTS[1], lang="en"),
    ]
    out = list(classify_posts(posts, classifier))
    assert [p.id for p in out] == ["test:1", "test:2"]
    for before, after in zip(posts, out, strict=True):
        assert after.classification is not None
        dumped = after.model_dump()
        dumped.pop("classification")
        original = before.model_dump()
        original.pop("classification")
        assert dumped == original


def test_cli_classify_keeps_every_field_and_reports_bad_lines(tmp_path: Path, capsys, caplog) -> None:  # type: ignore[no-untyped-def]
    from moments.cli import main

    good = _post("7", TEXTS[0], brand=["northwind"], extra={"nested": {"a": 1}}, mentions=["@northwind"])
    src = tmp_path / "posts.jsonl"
    src.write_text(good.to_json() + "\n{not json\n" + _post("8", "").to_json() + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["classify", str(src), "-o", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1  # an empty text has nothing to classify: dropped with its line number
    first = json.loads(lines[0])
    expected = json.loads(good.to_json())
    for key, value in expected.items():
        if key != "classification":
            assert first[key] == value, key
    assert first["classification"]["touchpoint"] in TOUCHPOINTS
    err = capsys.readouterr().err
    assert "1 classified" in err and "2 malformed" in err
    assert any("line 2" in rec.getMessage() for rec in caplog.records)
    assert any("line 3 dropped: text: must be a non-empty string" in rec.getMessage() for rec in caplog.records)


def test_cli_text(capsys) -> None:  # type: ignore[no-untyped-def]
    from moments.cli import main

    assert main(["classify", "--text", "my luggage never arrived and no one answers the phone"]) == 0
    result = Classification.model_validate_json(capsys.readouterr().out)
    assert result.sentiment == "negative"


def test_sentiment_mixes_the_shipped_lexical_model(classifier) -> None:  # type: ignore[no-untyped-def]
    # The manifest's share must reach the decision: recompute the mix by hand.
    from models.classifier import log_softmax, softmax

    assert classifier.sentiment_lexical is not None and 0 < classifier.sentiment_lexical_share < 1
    raw = classifier.encode(TEXTS)
    share = classifier.sentiment_lexical_share
    lexical = log_softmax(classifier.sentiment_lexical.logits(TEXTS))
    expected = softmax((1 - share) * log_softmax(raw.sentiment_logits) + share * lexical + classifier.sentiment_bias)
    assert (abs(classifier.sentiment_probs(raw, TEXTS) - expected) < 1e-5).all()
    encoder_only = softmax(raw.sentiment_logits + classifier.sentiment_bias)
    assert (abs(expected - encoder_only) > 1e-3).any()


def test_missing_lexical_vocabulary_is_a_clear_error(tmp_path: Path) -> None:
    import shutil

    from models.classifier import ARTIFACTS_DIR, Classifier
    from models.lexical import SENTIMENT_VOCAB

    shutil.copytree(ARTIFACTS_DIR, tmp_path / "artifacts")
    (tmp_path / "artifacts" / SENTIMENT_VOCAB).unlink()
    with pytest.raises(FileNotFoundError, match=SENTIMENT_VOCAB):
        Classifier(tmp_path / "artifacts")


def test_one_stack_mode_skips_the_base_layers(tmp_path: Path, artifacts_with: Callable[..., Path]) -> None:
    # A model whose touchpoint head reads the sentiment-tuned layers needs no second stack
    # for the default taxonomy; the zero-shot space is still there on request. Both modes
    # are built from the shipped artifacts, whichever mode those ship in.
    import numpy as np

    from models.classifier import Classifier

    one = Classifier(artifacts_with(tmp_path / "one", features_from="sentiment"))
    two = Classifier(artifacts_with(tmp_path / "two", features_from="base", zero_shot_space="base"))
    assert not one.needs_base and two.needs_base
    raw = one.encode(TEXTS)
    assert raw.embeddings is None
    with pytest.raises(ValueError, match="base=True"):
        raw.base_embeddings()
    pooled = raw.sentiment_pooled / np.linalg.norm(raw.sentiment_pooled, axis=1, keepdims=True)
    assert np.allclose(raw.features[:, -pooled.shape[1] :], pooled, atol=1e-5)
    both = two.encode(TEXTS)
    assert np.allclose(raw.sentiment_logits, both.sentiment_logits, atol=1e-4)
    assert not np.allclose(raw.features, both.features, atol=1e-3)
    assert np.allclose(one.encode(TEXTS, base=True).base_embeddings(), both.base_embeddings(), atol=1e-5)
    assert [r.sentiment for r in one.classify(TEXTS)] == [r.sentiment for r in two.classify(TEXTS)]


def test_sentiment_zero_shot_space_needs_tuned_features(tmp_path: Path, artifacts_with: Callable[..., Path]) -> None:
    from models.classifier import Classifier

    with pytest.raises(ValueError, match="zero_shot_space"):
        Classifier(artifacts_with(tmp_path, features_from="base", zero_shot_space="sentiment"))


def test_unknown_feature_source_is_a_clear_error(tmp_path: Path, artifacts_with: Callable[..., Path]) -> None:
    from models.classifier import Classifier

    with pytest.raises(ValueError, match="features_from"):
        Classifier(artifacts_with(tmp_path, features_from="somewhere"))
