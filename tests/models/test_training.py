"""Validation-only decision rules used by ``python -m models.train``."""

from __future__ import annotations

import numpy as np

from models.training import biases_generalise, macro_recall, tune_biases


def _recall(y: np.ndarray, p: np.ndarray) -> float:
    return macro_recall(y, p, 3)


def _data(shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 1200)
    logits = rng.normal(size=(1200, 3))
    logits[np.arange(1200), y] += 1.0
    logits[:, 0] += shift  # a systematic lean towards class 0
    return logits, y


def test_a_real_lean_is_corrected_and_kept() -> None:
    logits, y = _data(shift=1.5)
    bias, tuned = tune_biases(logits, y, _recall)
    assert bias[0] == 0 and (bias[1:] > 0.5).all()
    assert tuned > _recall(y, logits.argmax(1)) + 0.05
    keep, held_with, held_without = biases_generalise(logits, y, _recall, repeats=3)
    assert keep and held_with > held_without + 0.05


def test_biases_that_only_fit_noise_are_dropped() -> None:
    logits, y = _data(shift=0.0)
    _, tuned = tune_biases(logits, y, _recall)
    assert tuned >= _recall(y, logits.argmax(1))  # on the data it was tuned on, it always "helps"
    keep, held_with, held_without = biases_generalise(logits, y, _recall, repeats=3)
    assert not keep and held_with <= held_without


def test_sentiment_lexical_mix_is_chosen_on_val_and_ships_as_scored() -> None:
    from models.classifier import mix_log_probs
    from models.data import load_tweeteval
    from models.lexical import CHAR_WB_2_5, WORD_1_2
    from models.train import fit_sentiment_lexical

    train, val = load_tweeteval("train").head(1500), load_tweeteval("val").head(400)
    y_val = np.asarray(val.labels)
    # A weak stand-in for the encoder head: right 45% of the time, so the lexical model has room to help.
    rng = np.random.default_rng(1)
    encoder_logits = rng.normal(size=(len(y_val), 3))
    encoder_logits[np.arange(len(y_val)), np.where(rng.random(len(y_val)) < 0.45, y_val, 0)] += 1.5
    lexical, c, share, bias, report = fit_sentiment_lexical(
        train.texts, np.asarray(train.labels), val.texts, y_val, encoder_logits
    )
    assert [b.analyzer for b in lexical.blocks] == [WORD_1_2, CHAR_WB_2_5]
    assert c in (0.5, 1.0, 2.0, 4.0) and 0.0 < share <= 0.8
    assert report["val_macro_recall_mixed"] > _recall(y_val, encoder_logits.argmax(1))
    # The reported val figure is the decision the classifier will make with these parts.
    final = mix_log_probs(encoder_logits, lexical.logits(val.texts), share) + bias
    assert abs(_recall(y_val, final.argmax(1)) - report["val_macro_recall_final"]) < 1e-9
