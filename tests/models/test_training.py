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
