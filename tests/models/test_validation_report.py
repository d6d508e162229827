"""``models.validation_report``'s figures on the written contrast files and the real validation set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from models import data as D
from models.validation_report import CONTRAST_FILES, real_validation_figures, written_contrast_figures
from moments.records import Classification


class _Says:
    """A stand-in classifier that reads every post as one sentiment (the rule under test is the counting)."""

    def __init__(self, sentiment: str) -> None:
        self.sentiment = sentiment

    def classify(self, texts: Sequence[str]) -> list[Classification]:
        scores = {s: float(s == self.sentiment) for s in D.SENTIMENTS}
        return [
            Classification(
                sentiment=self.sentiment,
                sentiment_scores=scores,
                touchpoint="other",
                touchpoint_scores={"other": 1.0},
                moment="neutral",
                severity=0.0,
                model_version="stand-in",
            )
            for _ in texts
        ]


def test_a_model_that_calls_everything_praise_is_caught_on_the_complaints() -> None:
    praise_all = written_contrast_figures(_Says("positive"))  # type: ignore[arg-type]
    gripe_all = written_contrast_figures(_Says("negative"))  # type: ignore[arg-type]
    for name, path in CONTRAST_FILES.items():
        held = D.load_recovery("val", path=path)
        n_praise = sum(r["sentiment"] == "positive" for r in held)
        n_complaints = sum(r["sentiment"] == "negative" for r in held)
        assert n_praise > 20 and n_complaints > 20, name
        assert praise_all[f"{name}_val_praise"] == n_praise
        assert praise_all[f"{name}_val_praise_read_negative"] == 0
        assert praise_all[f"{name}_val_complaints_read_otherwise"] == n_complaints
        assert gripe_all[f"{name}_val_praise_read_negative"] == n_praise
        assert gripe_all[f"{name}_val_complaints_read_otherwise"] == 0


def test_the_shipped_model_on_the_held_out_contrast_rows(classifier) -> None:  # type: ignore[no-untyped-def]
    # Model y's figures (MODEL_CARD, y's section): a model that ships must not read more of the
    # held-out absent-cost praise as complaints, nor let more complaints through.
    figures = written_contrast_figures(classifier)
    assert figures["self_service_val_praise_read_negative"] <= 18, figures
    assert figures["self_service_val_complaints_read_otherwise"] <= 1, figures
    assert figures["contrast_val_praise_read_negative"] <= 16, figures
    assert figures["contrast_val_complaints_read_otherwise"] <= 5, figures


def test_the_real_validation_set_is_read_or_the_reason_given(classifier, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    unreadable = real_validation_figures(classifier, data=tmp_path)
    assert set(unreadable) == {"realval_unreadable"} and unreadable["realval_unreadable"]
    if not (D.datasets_dir() / "tweeteval_sentiment").is_dir():
        pytest.skip("shared datasets not found (set MOMENTS_DATASETS)")
    figures = real_validation_figures(classifier)
    assert figures["realval_n"] == 492
    assert figures["realval_sentiment_macro_f1"] >= 0.72, figures
    # model yr's relevance gate took it from 0.411 (y) to 0.4725 (models.relevance chose on it)
    assert figures["realval_touchpoint_macro_f1"] >= 0.46, figures
    assert figures["realval_praise"] > 50 and figures["realval_praise_bad_moment"] <= 8, figures
    # The delight supplement: model yrd calls few of its posts magic, most rightly, and reads 4 of its 129
    # real praise posts as a bad moment ("I trust the people at Go Sushi, it never disappoints.").
    assert figures["delight_n"] == 180 and figures["delight_praise"] >= 120, figures
    assert figures["delight_praise_bad_moment"] <= 4, figures
    assert figures["delight_magic_called"] >= 5 and figures["delight_magic_precision"] >= 0.75, figures
