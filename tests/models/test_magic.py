"""The magic threshold (models.magic): how the classifier applies it and how the shipped one was chosen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.classifier import ARTIFACTS_DIR, Classifier
from models.magic import (
    CANDIDATES,
    PRECISION_TARGET,
    choose_from_grid,
    choose_magic_threshold,
    validation_rows,
    write_threshold,
)


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


def test_the_shipped_threshold_follows_the_real_validation_rule_and_its_record_reproduces(classifier) -> None:  # type: ignore[no-untyped-def]
    moment = json.loads((ARTIFACTS_DIR / "manifest.json").read_text())["moment"]
    chosen, report = choose_magic_threshold(classifier)
    assert chosen["magic_min_probability"] == moment["magic_min_probability"] == classifier.magic_min_probability
    assert chosen["magic_needs_relevance"] is moment["magic_needs_relevance"] is classifier.magic_needs_relevance
    recorded = moment["magic_choice"]
    assert report["grid"] == recorded["grid"] and report["real_grid"] == recorded["real_grid"]
    assert report["criterion"] == recorded["criterion"]
    # Every floor, without the relevance condition and then with it (the shipped model has a gate).
    assert [(row["magic_needs_relevance"], row["magic_min_probability"]) for row in report["real_grid"]] == [
        (needs, floor) for needs in (False, True) for floor in CANDIDATES
    ]
    assert choose_from_grid(report["real_grid"]) == chosen
    # The real validation set and its delight supplement (models/data/realval/delight): 12 + 39 magic.
    assert report["real_validation_rows"] >= 650 and report["real_validation_magic"] >= 50
    # Precision first: the chosen rule calls fewer real posts magic, more of them rightly, than the argmax,
    # and reaches the aim there.
    argmax = report["real_grid"][0]
    assert chosen["precision"] > argmax["precision"] and chosen["called"] < argmax["called"]
    assert chosen["precision"] >= PRECISION_TARGET and "lowest floor" in report["criterion"]


def _row(
    floor: float | None, called: int, precision: float, f_beta: float, needs_relevance: bool = False
) -> dict[str, object]:
    return {
        "magic_min_probability": floor,
        "magic_needs_relevance": needs_relevance,
        "called": called,
        "precision": precision,
        "f_beta": f_beta,
    }


def test_the_rule_takes_the_lowest_floor_reaching_the_precision_target_else_the_best_f_half() -> None:
    grid = [_row(None, 40, 0.5, 0.5), _row(0.7, 20, 0.82, 0.7), _row(0.9, 5, 0.9, 0.6)]
    assert choose_from_grid(grid)["magic_min_probability"] == 0.7
    assert choose_from_grid(grid, target=0.85)["magic_min_probability"] == 0.9
    # Nothing reaches the target: the best F0.5, ties to the higher precision.
    assert choose_from_grid(grid, target=0.95)["magic_min_probability"] == 0.7
    tied = [_row(None, 40, 0.5, 0.6), _row(0.8, 10, 0.7, 0.6)]
    assert choose_from_grid(tied, target=0.95)["magic_min_probability"] == 0.8
    # A floor that calls nothing magic has no precision to speak of, whatever the grid says.
    assert choose_from_grid([_row(None, 10, 0.4, 0.4), _row(0.9, 0, 1.0, 0.0)])["magic_min_probability"] is None


def test_the_relevance_condition_wins_only_by_doing_better() -> None:
    plain = [_row(None, 40, 0.5, 0.5), _row(0.7, 20, 0.82, 0.7), _row(0.9, 5, 0.9, 0.6)]
    # It reaches the target at a lower floor: the lower floor wins, with the condition.
    lower = [*plain, _row(None, 30, 0.81, 0.75, True), _row(0.7, 15, 0.85, 0.7, True)]
    assert choose_from_grid(lower) == lower[3]
    # Both reach it at the same floor: the simpler rule (no condition) wins the tie.
    same = [*plain, _row(None, 30, 0.6, 0.55, True), _row(0.7, 15, 0.9, 0.72, True)]
    assert choose_from_grid(same) == plain[1]
    # Nothing reaches the target: the best F0.5, the condition's only if strictly better.
    assert choose_from_grid(same, target=0.95) == same[4]
    tie = [*plain, _row(0.7, 15, 0.82, 0.7, True)]
    assert choose_from_grid(tie, target=0.95) == plain[1]


def test_without_the_real_validation_set_the_written_posts_decide(  # type: ignore[no-untyped-def]
    classifier, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from models import realset

    monkeypatch.setattr(realset, "REALVAL_LABELS_PATH", tmp_path / "missing.jsonl")
    chosen, report = choose_magic_threshold(classifier)
    assert "real_grid" not in report and "written" in report["criterion"]
    best = max(report["grid"], key=lambda row: (row["f_beta"], row["precision"]))
    assert chosen == best


def test_a_manifest_without_a_threshold_keeps_the_argmax(tmp_path: Path, classifier) -> None:  # type: ignore[no-untyped-def]
    import shutil

    out = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS_DIR, out)
    write_threshold(out, {"magic_min_probability": None}, {"grid": []}, version="no-floor")
    plain = Classifier(out)
    assert plain.magic_min_probability is None and plain.model_version == "no-floor"
    assert not plain.magic_needs_relevance
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


def test_the_relevance_condition_takes_magic_only_from_posts_the_gate_finds_off_topic(classifier) -> None:  # type: ignore[no-untyped-def]
    # Delighted posts about no company ("I love this shirt", a film) and delighted customers.
    texts = [
        "I actually bought the cutest shirt with a tiny rocket on it and I love it so much.",
        "Best film I have seen all year, the lead actor is simply brilliant!",
        "What a gorgeous sunset tonight, I am so happy right now.",
        "Happy birthday to my amazing sister, love you to the moon!",
        "The crew on my Northwind flight celebrated my grandmother's first flight with a card and a song. Amazing!",
        "The waiter went above and beyond and brought out a birthday cake for my daughter. Wonderful staff!",
        "@NorthwindAir your agent stayed two hours to rebook our whole school band. Thank you, you are heroes!",
    ]
    raw = classifier.encode(texts)
    off_topic = classifier.off_topic(raw, texts)
    assert off_topic is not None
    kept = classifier.magic_needs_relevance, classifier.magic_min_probability
    try:
        classifier.magic_min_probability = 0.7  # yrm's floor, where the condition was chosen
        classifier.magic_needs_relevance = False
        without = np.array([r.moment == "magic" for r in classifier.classify(texts)])
        classifier.magic_needs_relevance = True
        with_condition = np.array([r.moment == "magic" for r in classifier.classify(texts)])
    finally:
        classifier.magic_needs_relevance, classifier.magic_min_probability = kept
    assert not (with_condition & ~without).any(), "the condition never makes a post magic"
    assert ((without & ~with_condition) == (without & off_topic)).all(), "it takes magic from off-topic posts only"
    # Here it matters: delight about no company was magic without it, and the two customers stay magic.
    assert (without & off_topic)[:4].sum() >= 2
    assert with_condition[4:6].all()
    assert not off_topic[6], "a post to a brand's @handle is never off topic"
