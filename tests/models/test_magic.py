"""The magic threshold (models.magic): how the classifier applies it and how the shipped one was chosen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.classifier import ARTIFACTS_DIR, Classifier
from models.magic import CANDIDATES, choose_magic_threshold, validation_rows, write_threshold


def _magic(classifier: Classifier, texts: list[str], floor: float | None) -> np.ndarray:
    kept = classifier.magic_min_probability
    classifier.magic_min_probability = floor
    try:
        return np.array([r.moment == "magic" for r in classifier.classify(texts)])
    finally:
        classifier.magic_min_probability = kept


def test_a_higher_floor_only_ever_takes_magic_away(classifier) -> None:  # type: ignore[no-untyped-def]
    texts = [str(r["text"]) for r in validation_rows()]
    argmax, floor_07, floor_09 = (_magic(classifier, texts, f) for f in (None, 0.7, 0.9))
    assert floor_09.sum() <= floor_07.sum() < argmax.sum()
    assert not (floor_07 & ~argmax).any() and not (floor_09 & ~floor_07).any()


def test_the_shipped_threshold_is_the_best_f_half_on_validation_and_its_record_reproduces(classifier) -> None:  # type: ignore[no-untyped-def]
    moment = json.loads((ARTIFACTS_DIR / "manifest.json").read_text())["moment"]
    chosen, report = choose_magic_threshold(classifier)
    assert chosen == moment["magic_min_probability"] == classifier.magic_min_probability
    assert report["grid"] == moment["magic_choice"]["grid"]
    assert [row["magic_min_probability"] for row in report["grid"]] == list(CANDIDATES)
    best = max(report["grid"], key=lambda row: (row["f_beta"], row["precision"]))
    assert best["magic_min_probability"] == chosen
    # Precision first: the chosen floor calls fewer posts magic, more of them rightly, than the argmax.
    argmax = report["grid"][0]
    assert best["precision"] > argmax["precision"] and best["called"] < argmax["called"]


def test_a_manifest_without_a_threshold_keeps_the_argmax(tmp_path: Path, classifier) -> None:  # type: ignore[no-untyped-def]
    import shutil

    out = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS_DIR, out)
    write_threshold(out, None, {"grid": []}, version="no-floor")
    plain = Classifier(out)
    assert plain.magic_min_probability is None and plain.model_version == "no-floor"
    texts = [str(r["text"]) for r in validation_rows()][:120]
    assert (_magic(plain, texts, None) == _magic(classifier, texts, None)).all()


def test_the_floor_reads_the_moment_heads_magic_probability(classifier) -> None:  # type: ignore[no-untyped-def]
    floor = 0.7
    texts = [str(r["text"]).strip() for r in validation_rows()]
    raw = classifier.encode(texts)
    head = classifier.moment_head_probs(raw)
    magic = _magic(classifier, texts, floor)
    # Every post called magic through the head cleared the floor (the detector's recovery stories aside).
    _, recovered = classifier.outcome_sentiment(raw, texts)
    assert (head[magic & ~recovered, 2] >= floor).all()
    assert (magic & ~recovered).any()
