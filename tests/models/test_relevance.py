"""The relevance gate (``models.relevance``): chatter goes to ``other``, customers writing to a brand never do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models import relevance
from models.classifier import ARTIFACTS_DIR, Classifier
from models.data import datasets_dir
from models.realset import learnt_registers
from models.relevance import addressed, gate_to_other, gateable

needs_datasets = pytest.mark.skipif(
    not (datasets_dir() / "goemotions").is_dir(), reason="shared datasets not found (set MOMENTS_DATASETS)"
)

OTHER = 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@AirAsiaSupport hi! I booked my ticket", True),
        ("I finally got to speak to a rational human at @DellCares customer service.", True),
        ("Write to me at dana@example.com about the refund", False),
        ("Watching the game tonight", False),
    ],
)
def test_a_post_that_mentions_an_account_is_addressed(text: str, expected: bool) -> None:
    assert addressed(text) is expected


def test_posts_not_in_english_are_never_gated() -> None:
    # the gate learnt English only; the classifier already treats foreign text as unsure
    assert not gateable("Llevo 40 minutos en la fila del check-in y solo hay dos mostradores abiertos. Vergonzoso.")
    assert gateable("Been 40 minutes in the check-in line and only two desks are open. Shameful.")


def test_the_gate_moves_the_mass_of_irrelevant_posts_to_other_and_keeps_the_runner_up() -> None:
    probs = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1]])
    p_relevant = np.array([0.1, 0.1, 0.9, 0.1])
    texts = [
        "at least you get sunny on netflix",
        "@brand my order is late",
        "x",
        "¿Dónde está mi maleta? Nadie responde.",
    ]
    out = gate_to_other(probs, p_relevant, 0.15, texts, OTHER)
    np.testing.assert_allclose(out[0], 0.1 * probs[0] + 0.9 * np.eye(3)[OTHER])
    assert out[0].argmax() == OTHER and out[0][0] > out[0][1]  # the runner-up order is still there to read
    np.testing.assert_allclose(out[1:], probs[1:])  # addressed, relevant, not English: untouched
    np.testing.assert_allclose(out.sum(1), 1.0)


def test_the_shipped_model_sends_chatter_to_other_and_keeps_customers(classifier) -> None:  # type: ignore[no-untyped-def]
    # Texts written for this test, in the registers the gate separates (not in any training file).
    # The first names a company in passing, and the head alone gives it a touchpoint (below).
    chatter = [
        "Apparently Starbucks is the new office for half of this city",
        "Binge watching old sitcoms on Netflix with my sister all weekend, no regrets",
    ]
    customers = [
        "Northwind Air lost my bag on the way to Denver and nobody at the desk can tell me where it is",
        "The soup was cold and the waiter never came back to our table",
        "My card payment was declined twice in the app even though I have money in the account",
    ]
    results = classifier.classify(chatter + customers)
    assert [r.touchpoint for r in results[: len(chatter)]] == ["other"] * len(chatter)
    assert all(r.touchpoint != "other" for r in results[len(chatter) :])
    p_relevant = classifier.relevance_probs(classifier.encode(chatter + customers))
    assert p_relevant is not None
    assert p_relevant[: len(chatter)].max() < classifier.relevance_threshold < p_relevant[len(chatter) :].min()


def test_the_shipped_manifest_records_the_choice_and_the_sources_it_learnt_from() -> None:
    manifest = json.loads((ARTIFACTS_DIR / "manifest.json").read_text())
    gate = manifest["touchpoint"]["relevance"]
    report = gate["report"]
    chosen = report["chosen"]
    assert gate["threshold"] == chosen["threshold"] in relevance.THRESHOLDS and chosen["C"] in relevance.CS
    # the rule: the best real validation macro-F1 within both bounds, and it beats no gate
    assert chosen["real_val_macro_f1"] > report["real_val_macro_f1_without"]
    allowed = [
        row
        for row in report["grid"]
        if row["dev_macro_f1"] >= report["dev_macro_f1_without"] - report["max_dev_cost"]
        and row["real_val_unseen_accuracy"] >= report["real_val_unseen_accuracy_without"] - report["max_unseen_cost"]
    ]
    assert chosen == max(allowed, key=lambda row: row["real_val_macro_f1"])
    assert manifest["touchpoint"]["dev_macro_f1"] == chosen["dev_macro_f1"]
    # `moments eval` reports the registers the gate learnt from apart from the rest
    assert learnt_registers(manifest) == {"banking77", "goemotions", "tweeteval"}
    assert learnt_registers({"touchpoint": {}}) == set()


def test_a_model_without_a_gate_leaves_touchpoints_alone(classifier) -> None:  # type: ignore[no-untyped-def]
    texts = ["Apparently Starbucks is the new office for half of this city"]
    raw = classifier.encode(texts)
    gated = classifier.touchpoint_probs(raw, texts)
    assert gated.argmax(1)[0] == classifier.taxonomy.ids.index("other")
    assert classifier.touchpoint_probs(raw, texts, gate=False).argmax(1)[0] != gated.argmax(1)[0]
    kept, classifier.relevance_w = classifier.relevance_w, None
    try:
        assert classifier.relevance_probs(raw) is None
        without_a_gate = classifier.touchpoint_probs(raw, texts)
    finally:
        classifier.relevance_w = kept
    np.testing.assert_allclose(without_a_gate, classifier.touchpoint_probs(raw, texts, gate=False))


@pytest.mark.slow
@needs_datasets
def test_the_command_refits_the_shipped_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The gate was chosen on model yr's float32 outputs; its recorded figures reproduce there (the
    # shipped runtime, bfloat16, moves them in the fourth digit).
    monkeypatch.setenv("MOMENTS_RUNTIME", "torch")
    out = tmp_path / "refit"
    assert relevance.main([str(ARTIFACTS_DIR), "--out", str(out), "--version", "refit"]) == 0
    shipped = json.loads((ARTIFACTS_DIR / "manifest.json").read_text())["touchpoint"]["relevance"]
    refit = json.loads((out / "manifest.json").read_text())
    assert refit["model_version"] == "refit"
    # fitting reads the outputs without the shipped gate, so the refit makes the same choice
    assert refit["touchpoint"]["relevance"]["report"]["chosen"] == shipped["report"]["chosen"]
    a, b = Classifier(ARTIFACTS_DIR), Classifier(out)
    assert b.relevance_w is not None and a.relevance_w is not None
    np.testing.assert_allclose(b.relevance_w, a.relevance_w, atol=1e-4)


@pytest.mark.slow
@needs_datasets
def test_no_gate_is_written_when_none_beats_the_model_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a threshold no probability reaches gates nothing, so nothing beats the ungated model
    monkeypatch.setattr(relevance, "THRESHOLDS", (0.0,))
    monkeypatch.setattr(relevance, "CS", (1.0,))
    out = tmp_path / "none"
    assert relevance.main([str(ARTIFACTS_DIR), "--out", str(out)]) == 1
    assert "no gate beats the model without one" in capsys.readouterr().err


@pytest.mark.slow
@needs_datasets
def test_a_handful_of_care_team_corrections_moves_the_gate_on_similar_posts(tmp_path: Path) -> None:
    # Restaurant praise that reads like chatter to the gate; five agents' "wrong touchpoint" corrections
    # (as `moments feedback export` writes them) of posts written for this test, in that pattern.
    corrected = [
        "Juniper Noodle Bar has the silkiest and most comforting noodles in Seattle.",
        "Ostra has the freshest and most generous oyster platter in Lisbon.",
        "Pepper & Pine has the crispiest and most addictive fried chicken in Atlanta.",
        "Saffron Room has the richest and most fragrant biryani in Houston.",
        "Little Dumpling has the juiciest and most delicate dumplings in Toronto.",
    ]
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(
        "".join(
            json.dumps({"text": t, "label_kind": "touchpoint", "label": "product_experience"}) + "\n" for t in corrected
        )
    )
    similar = "Kaito Ramen has the richest and most satisfying bowls of ramen in Boston."
    chatter = "Binge watching old sitcoms on Netflix with my sister all weekend, no regrets"
    out = tmp_path / "corrected"
    assert relevance.main([str(ARTIFACTS_DIR), "--out", str(out), "--feedback", str(feedback)]) == 0
    before, after = Classifier(ARTIFACTS_DIR), Classifier(out)
    p_before = before.relevance_probs(before.encode([similar, chatter]))
    p_after = after.relevance_probs(after.encode([similar, chatter]))
    assert p_before is not None and p_after is not None
    assert p_after[0] > p_before[0] + 0.1, (p_before, p_after)  # the similar post, never corrected itself
    assert p_after[1] < after.relevance_threshold  # chatter is still chatter
    report = json.loads((out / "manifest.json").read_text())["touchpoint"]["relevance"]["report"]
    assert report["feedback_rows"] == len(corrected)


def test_an_unreadable_feedback_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "feedback.jsonl"
    broken.write_text('{"text": "fine", "label_kind": "touchpoint", "label": "other"}\nnot json\n')
    assert relevance.main([str(ARTIFACTS_DIR), "--out", str(tmp_path / "x"), "--feedback", str(broken)]) == 2
    assert "line 2 is not JSON" in capsys.readouterr().err
    assert not (tmp_path / "x").exists(), "nothing is written"
