"""The real-text evaluation set: mapping tables, the seeded sample, text resolution, adjudication.

Fast (no model): the sample builder reads the shared datasets (under a second); tests
that need them skip with the reason when they are not there.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from models import realset
from models.data import datasets_dir
from models.realset import (
    FIELDS,
    TARGETS,
    Item,
    RealsetError,
    adjudicate,
    banking77_touchpoints,
    build_sample,
    cohen_kappa,
    inconsistencies,
    item_id_for,
    learnt_registers,
    load_chatter,
    load_demo_intended,
    load_items,
    read_committed,
    semeval_touchpoints,
    text_sha256,
)
from models.taxonomy import TOUCHPOINTS
from moments.errors import UsageError

DATA = datasets_dir()
needs_datasets = pytest.mark.skipif(
    not all(
        (DATA / name).is_dir()
        for name in (
            "banking77",
            "semeval14_restaurants",
            "goemotions",
            "tweeteval_sentiment",
            "customer_support_twitter",
        )
    ),
    reason=f"shared datasets not found under {DATA} (set MOMENTS_DATASETS)",
)


# --- mapping tables ----------------------------------------------------------------------------


def test_banking77_table_maps_77_intents_to_real_touchpoints() -> None:
    table = banking77_touchpoints()
    assert len(table) == 77
    assert set(table.values()) <= set(TOUCHPOINTS)
    with realset.BANKING77_TABLE.open(encoding="utf-8", newline="") as handle:
        assert all(row["why"].strip() for row in csv.DictReader(handle))


@needs_datasets
def test_banking77_table_covers_exactly_the_datasets_intents() -> None:
    intents = json.loads((DATA / "banking77" / "categories.json").read_text(encoding="utf-8"))
    assert set(banking77_touchpoints()) == set(intents)


def test_semeval_table_maps_every_aspect_category() -> None:
    table = semeval_touchpoints()
    assert set(table) == {"food", "service", "price", "ambience", "anecdotes/miscellaneous"}
    assert set(table.values()) <= set(TOUCHPOINTS)
    # The guide's decisions: ambience is the room in use, not marketing.
    assert table["ambience"] == "product_experience"
    assert table["service"] == "staff_interaction"


@needs_datasets
def test_semeval_table_covers_the_datasets_categories() -> None:
    path = DATA / "semeval14_restaurants" / "test_aspect_categories.tsv"
    with path.open(encoding="utf-8", newline="") as handle:
        cats = {row[2] for row in list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]}
    assert cats == set(semeval_touchpoints())


# --- the committed set -------------------------------------------------------------------------


def test_committed_items_have_the_planned_composition_and_no_unshippable_text() -> None:
    items = read_committed()
    counts = Counter(i.source + ("/" + i.subset[0] if i.source == "twcs" else "") for i in items)
    assert counts == {
        "banking77": TARGETS["banking77"],
        "semeval14": TARGETS["semeval14"],
        "goemotions": TARGETS["goemotions"],
        "tweeteval": TARGETS["tweeteval"],
        "twcs/opening": TARGETS["twcs_opening"],
        "twcs/after_brand_reply": TARGETS["twcs_followup"],
        "demo": 81,
    }
    assert len({i.item_id for i in items}) == len(items)
    for item in items:
        assert item.item_id == item_id_for(item.source, item.split, item.ref)
    raw = [json.loads(line) for line in realset.ITEMS_PATH.read_text(encoding="utf-8").splitlines()]
    for obj in raw:
        if obj["source"] in ("banking77", "demo"):
            assert text_sha256(obj["text"]) == obj["sha256"]
        else:
            assert "text" not in obj, f"{obj['source']} text must not be committed"


@needs_datasets
def test_sample_is_deterministic_and_matches_the_committed_ids() -> None:
    first = [i.item_id for i in build_sample(seed=14)]
    assert first == [i.item_id for i in build_sample(seed=14)]
    committed = {i.item_id for i in read_committed() if i.source != "demo"}
    assert set(first) == committed
    assert set(first) != {i.item_id for i in build_sample(seed=15)}


@needs_datasets
def test_every_committed_text_resolves_with_its_hash() -> None:
    loaded = load_items()
    assert loaded.skipped == {}
    assert len(loaded.items) == len(read_committed())
    assert all(i.text and text_sha256(i.text) == i.sha256 for i in loaded.items)


@needs_datasets
def test_a_changed_source_text_is_detected(tmp_path: Path) -> None:
    lines = realset.ITEMS_PATH.read_text(encoding="utf-8").splitlines()
    index = next(n for n, line in enumerate(lines) if json.loads(line)["source"] == "tweeteval")
    obj = json.loads(lines[index])
    obj["sha256"] = text_sha256("something else")
    lines[index] = json.dumps(obj)
    tampered = tmp_path / "items.jsonl"
    tampered.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RealsetError, match="sha256 differs"):
        load_items(tampered)


def test_missing_datasets_skip_their_sources_with_a_reason(tmp_path: Path) -> None:
    loaded = load_items(data=tmp_path)
    assert {i.source for i in loaded.items} == {"banking77", "demo"}
    assert set(loaded.skipped) == {"semeval14", "goemotions", "tweeteval", "twcs"}
    assert all("not found" in reason for reason in loaded.skipped.values())


# --- demo intended labels ----------------------------------------------------------------------


def test_every_demo_post_has_valid_intended_labels() -> None:
    intended = load_demo_intended()
    demo = {i.item_id: i for i in read_committed() if i.source == "demo"}
    assert set(intended) == set(demo)
    for item_id, row in intended.items():
        assert row["post_id"] == demo[item_id].ref
        assert row["touchpoint"] in TOUCHPOINTS
        assert row["sentiment"] in realset.SENTIMENTS and row["moment"] in realset.MOMENTS
        assert inconsistencies(row) == [], (row["post_id"], inconsistencies(row))
    by_post = {row["post_id"]: row for row in intended.values()}
    # Issue 14's examples: the service recovery is magic, the broken wheelchair is misery.
    assert by_post["reddit:t3_4a1n8rt"]["moment"] == "magic" and by_post["reddit:t3_4a1n8rt"]["recovery_story"]
    assert by_post["reddit:t3_3lnm35z"]["sentiment"] == "positive"
    assert by_post["mastodon:117648834953216207"]["moment"] == "misery"
    # Demo items carry their intended labels as weak labels.
    assert all(demo[i].weak == {f: intended[i][f] for f in FIELDS} for i in demo)


# --- adjudication ------------------------------------------------------------------------------


def _labels(sentiment: str, touchpoint: str = "other") -> dict[str, object]:
    return {"touchpoint": touchpoint, "sentiment": sentiment, "moment": "neutral", "recovery_story": False}


# Ten items: (pass A sentiment, pass B sentiment, weak sentiment).
_SYNTHETIC = [
    ("positive", "positive", None),
    ("positive", "positive", "negative"),  # agreed, even against the weak label
    ("positive", "positive", None),
    ("positive", "negative", "negative"),  # disagree, B matches weak -> weak
    ("negative", "negative", None),
    ("negative", "negative", None),
    ("negative", "neutral", None),  # disagree, no weak -> third
    ("neutral", "neutral", None),
    ("neutral", "neutral", None),
    ("neutral", "positive", "negative"),  # disagree, neither matches weak -> third
]


def _synthetic() -> tuple[list[Item], dict[str, dict[str, object]], dict[str, dict[str, object]]]:
    items, pass_a, pass_b = [], {}, {}
    for n, (a, b, weak) in enumerate(_SYNTHETIC):
        item_id = f"i{n}"
        items.append(Item(item_id, "banking77", "test", str(n), "x", {"sentiment": weak} if weak else {}))
        pass_a[item_id], pass_b[item_id] = _labels(a), _labels(b)
    return items, pass_a, pass_b


def test_kappa_matches_the_hand_computed_value() -> None:
    a = [row[0] for row in _SYNTHETIC]
    b = [row[1] for row in _SYNTHETIC]
    # p_o = 7/10; both passes: 4 positive, 3 negative, 3 neutral -> p_e = (16+9+9)/100 = 0.34;
    # kappa = (0.70 - 0.34) / (1 - 0.34) = 0.36 / 0.66 = 6/11.
    assert cohen_kappa(a, b) == pytest.approx(6 / 11)
    assert cohen_kappa(["x"] * 4, ["x"] * 4) == 1.0
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)


def test_adjudication_follows_the_documented_rule() -> None:
    items, pass_a, pass_b = _synthetic()
    result = adjudicate(items, pass_a, pass_b)
    assert result.how["i0"]["sentiment"] == "agreed"
    assert (result.labels["i1"]["sentiment"], result.how["i1"]["sentiment"]) == ("positive", "agreed")
    assert (result.labels["i3"]["sentiment"], result.how["i3"]["sentiment"]) == ("negative", "weak")
    assert result.disputes == {"i6": ["sentiment"], "i9": ["sentiment"]}
    raw, kappa, n = result.agreement["sentiment"]
    assert (raw, n) == (0.7, 10) and kappa == pytest.approx(6 / 11)
    assert result.agreement["touchpoint"] == (1.0, 1.0, 10)

    third = {"i6": _labels("negative"), "i9": _labels("neutral")}
    decided = adjudicate(items, pass_a, pass_b, third)
    assert decided.disputes == {}
    assert (decided.labels["i6"]["sentiment"], decided.how["i6"]["sentiment"]) == ("negative", "third")
    assert (decided.labels["i9"]["sentiment"], decided.how["i9"]["sentiment"]) == ("neutral", "third")
    # The weak label still wins over the third pass where it breaks the tie.
    assert decided.how["i3"]["sentiment"] == "weak"


def test_adjudicate_command_writes_labels_without_text_and_agreement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items, pass_a, pass_b = _synthetic()
    items_path = tmp_path / "items.jsonl"
    for item in items:
        item.text = f"query {item.ref}"
        item.sha256 = text_sha256(item.text)
    items_path.write_text("".join(json.dumps(i.to_committed()) + "\n" for i in items), encoding="utf-8")
    paths = {}
    for name, labels in (("a", pass_a), ("b", pass_b)):
        paths[name] = tmp_path / f"pass_{name}.jsonl"
        paths[name].write_text(
            "".join(json.dumps({"item_id": k, **v}) + "\n" for k, v in labels.items()), encoding="utf-8"
        )
    out, agreement, disputes = tmp_path / "labels.jsonl", tmp_path / "AGREEMENT.md", tmp_path / "disputes.jsonl"
    code = realset.main(
        [
            "--items",
            str(items_path),
            "adjudicate",
            str(paths["a"]),
            str(paths["b"]),
            "-o",
            str(out),
            "--agreement",
            str(agreement),
            "--list-disputes",
            str(disputes),
        ]
    )
    assert code == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["item_id"] for r in rows] == [f"i{n}" for n in range(10) if n not in (6, 9)]
    assert all("text" not in r and set(r) == {"item_id", *FIELDS, "how"} for r in rows)
    report = agreement.read_text(encoding="utf-8")
    assert "| sentiment | 10 | 0.700 | 0.545 |" in report
    assert "| sentiment | 7 | 1 | 0 | 2 |" in report
    listed = [json.loads(line) for line in disputes.read_text(encoding="utf-8").splitlines()]
    assert listed == [
        {
            "item_id": "i6",
            "text": "query 6",
            "fields": ["sentiment"],
            "choices": {"sentiment": ["negative", "neutral"]},
        },
        {
            "item_id": "i9",
            "text": "query 9",
            "fields": ["sentiment"],
            "choices": {"sentiment": ["neutral", "positive"]},
        },
    ]

    paths["b"].write_text(json.dumps({"item_id": "i0", **_labels("happy")}) + "\n", encoding="utf-8")
    code = realset.main(
        [
            "--items",
            str(items_path),
            "adjudicate",
            str(paths["a"]),
            str(paths["b"]),
            "-o",
            str(out),
            "--agreement",
            str(agreement),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sentiment must be one of" in err


def _readjudicated(
    items_path: Path, labels_path: Path, folder: Path, name: str
) -> tuple[
    realset.Adjudication,
    dict[str, dict[str, object]],
    dict[str, dict[str, object]],
    dict[str, dict[str, object]],
    dict[str, dict[str, object]],
]:
    """The committed passes ``folder/passes/{name}_pass_{a,b,c}.jsonl`` adjudicated again, checked
    against the committed labels: every item decided, label for label, none breaking a guide rule.

    Returns the result, the committed labels and passes A, B and C.
    """
    items = read_committed(items_path)
    known = {item.item_id for item in items}
    pass_a, pass_b, third = (realset.read_pass(folder / "passes" / f"{name}_pass_{x}.jsonl", known) for x in "abc")
    result = adjudicate(items, pass_a, pass_b, third)
    committed = {row["item_id"]: row for row in realset.read_jsonl(labels_path)}
    assert not result.disputes and not result.missing
    assert committed.keys() == result.labels.keys() == known
    for item_id, labels in result.labels.items():
        assert {field: committed[item_id][field] for field in FIELDS} == labels, item_id
        assert not inconsistencies(labels), item_id
    return result, committed, pass_a, pass_b, third


def test_committed_labels_are_exactly_what_the_committed_passes_adjudicate_to() -> None:
    """labels.jsonl is reproducible: the rule applied to passes A, B and C gives it, label for label."""
    result, committed, *_ = _readjudicated(realset.ITEMS_PATH, realset.LABELS_PATH, realset.REALSET_DIR, "realset")
    for item_id in result.labels:
        assert committed[item_id]["how"] == result.how[item_id], item_id
    # The two blind passes agree far above chance on every field (Cohen's kappa).
    assert all(kappa > 0.8 for _, kappa, _ in result.agreement.values())


def test_chatter_is_train_posts_naming_a_company_or_service_labelled_other(tmp_path: Path) -> None:
    goemotions = tmp_path / "goemotions"
    goemotions.mkdir()
    (goemotions / "emotions.txt").write_text("admiration\nneutral\n", encoding="utf-8")
    train_comments = [
        "My landlord finally fixed the heating after a month",  # keyword: kept
        "What a great goal in the second half of the match",  # no company or service: dropped
        "the app",  # keyword, but shorter than 25 characters: dropped
        "This restaurant review thread is gold, honestly",  # also in test: dropped
        "My landlord finally fixed the heating after a month",  # duplicate: dropped
    ]
    (goemotions / "train.tsv").write_text(
        "".join(f"{text}\t1\tc{n}\n" for n, text in enumerate(train_comments)), encoding="utf-8"
    )
    (goemotions / "test.tsv").write_text("This restaurant review thread is gold, honestly\t0\tt0\n", encoding="utf-8")
    tweeteval = tmp_path / "tweeteval_sentiment"
    tweeteval.mkdir()
    (tweeteval / "train.tsv").write_text(
        "text\tlabel\n@user Netflix and pizza tonight, perfect Friday\t2\nVote on Tuesday, everyone\t1\n",
        encoding="utf-8",
    )
    (tweeteval / "test.tsv").write_text("text\tlabel\nNothing here\t1\n", encoding="utf-8")

    texts, labels = load_chatter("train", tmp_path)

    assert texts == [
        "My landlord finally fixed the heating after a month",
        "@user Netflix and pizza tonight, perfect Friday",
    ]
    assert labels == ["other", "other"]
    with pytest.raises(UsageError, match="test splits"):
        load_chatter("test", tmp_path)


def test_a_model_is_said_to_have_learnt_the_registers_of_its_weighted_sources() -> None:
    def manifest(**weights: float) -> dict[str, object]:
        return {"touchpoint": {"weak_sources": {f"chosen_weight {k}": w for k, w in weights.items()}}}

    assert learnt_registers(manifest(banking77=0.01, semeval14=0.0)) == {"banking77"}
    assert learnt_registers(manifest(banking77=0.0, chatter=0.003)) == {"goemotions", "tweeteval"}
    assert learnt_registers({"touchpoint": {}}) == set()
    assert learnt_registers({}) == set()


# --- the real recovery-story set -----------------------------------------------------------------


def test_recovery_labels_are_exactly_what_their_committed_passes_adjudicate_to() -> None:
    """recovery_labels.jsonl is reproducible from passes A, B and C, and keeps the guide's rules."""
    result, _, pass_a, pass_b, third = _readjudicated(
        realset.RECOVERY_ITEMS_PATH, realset.RECOVERY_LABELS_PATH, realset.REALSET_DIR, "recovery"
    )
    # The third pass decided only what the two blind passes disputed.
    assert set(third) == {i for i in result.labels if pass_a[i] != pass_b[i]}
    assert sum(labels["recovery_story"] for labels in result.labels.values()) >= 10


def test_recovery_candidates_are_twcs_follow_ups_outside_the_real_set_and_commit_no_text() -> None:
    items = read_committed(realset.RECOVERY_ITEMS_PATH)
    assert items and all(i.source == "twcs" and i.subset == ["recovery_candidate"] for i in items)
    in_realset = {i.item_id for i in read_committed()}
    assert not in_realset & {i.item_id for i in items}
    raw = [json.loads(line) for line in realset.RECOVERY_ITEMS_PATH.read_text(encoding="utf-8").splitlines()]
    assert all("text" not in obj for obj in raw), "TWCS text must not be committed"


@needs_datasets
def test_recovery_candidates_rebuild_to_the_committed_items_and_each_has_an_outcome_word() -> None:
    rebuilt = realset.recovery_candidates(exclude=read_committed())
    assert {i.item_id for i in rebuilt} == {i.item_id for i in read_committed(realset.RECOVERY_ITEMS_PATH)}
    assert len(rebuilt) == len({i.item_id for i in rebuilt})
    assert all(i.text and realset.OUTCOME_CUE.search(i.text) for i in rebuilt)
    # Taking the real set's items out is what keeps the two sets apart.
    with_overlap = {i.item_id for i in realset.recovery_candidates()}
    assert with_overlap > {i.item_id for i in rebuilt}


# --- the real validation set (models/data/realval) ---------------------------------------------


@needs_datasets
def test_the_validation_sample_rebuilds_to_its_committed_items_and_shares_none_with_the_eval_sets() -> None:
    rebuilt = realset.validation_sample()
    committed = read_committed(realset.REALVAL_ITEMS_PATH)
    assert [i.item_id for i in rebuilt] == [i.item_id for i in realset.validation_sample()]
    assert {i.item_id for i in rebuilt} == {i.item_id for i in committed}
    evaluation = {(i.source, i.ref) for i in read_committed()} | {
        (i.source, i.ref) for i in read_committed(realset.RECOVERY_ITEMS_PATH)
    }
    # Disjoint by row, not only by id: a GoEmotions dev comment and a test comment never share an id.
    assert not evaluation & {(i.source, i.ref) for i in committed}
    assert not {i.item_id for i in read_committed()} & {i.item_id for i in committed}
    # GoEmotions and TweetEval come from their dev/val splits; no demo post is in it.
    splits = {(i.source, i.split) for i in committed}
    assert ("goemotions", "dev") in splits and ("tweeteval", "val") in splits
    assert not {s for s, _ in splits} & {"demo"}
    counts = Counter(i.source + ("/" + i.subset[0] if i.source == "twcs" else "") for i in committed)
    for key, target in realset.VALIDATION_TARGETS.items():
        name = {"twcs_opening": "twcs/opening", "twcs_followup": "twcs/after_brand_reply"}.get(key, key)
        assert 0 < counts[name] <= target, name
    raw = [json.loads(line) for line in realset.REALVAL_ITEMS_PATH.read_text(encoding="utf-8").splitlines()]
    assert all(("text" in obj) == (obj["source"] == "banking77") for obj in raw)


def test_the_default_draw_is_the_real_sets_draw() -> None:
    draw = realset.Draw()
    assert draw.targets == TARGETS and draw.split("goemotions") == "test" and draw.free("twcs", "1")
    assert not realset.Draw(taken=frozenset({("twcs", "1")})).free("twcs", "1")


@needs_datasets
def test_validation_labels_are_exactly_what_their_committed_passes_adjudicate_to() -> None:
    result, _, pass_a, pass_b, third = _readjudicated(
        realset.REALVAL_ITEMS_PATH, realset.REALVAL_LABELS_PATH, realset.REALVAL_DIR, "realval"
    )
    assert set(third) <= {i for i in result.labels if pass_a[i] != pass_b[i]}
    assert sum(labels["moment"] == "magic" for labels in result.labels.values()) >= 10


# --- the real validation set's delight supplement (models/data/realval/delight) ----------------


@needs_datasets
def test_the_delight_sample_rebuilds_to_its_committed_items_and_shares_none_with_the_other_sets() -> None:
    rebuilt = realset.delight_sample()
    committed = read_committed(realset.DELIGHT_ITEMS_PATH)
    assert [i.item_id for i in rebuilt] == [i.item_id for i in realset.delight_sample()]
    assert {i.item_id for i in rebuilt} == {i.item_id for i in committed}
    others = {
        (i.source, i.ref)
        for path in (realset.ITEMS_PATH, realset.RECOVERY_ITEMS_PATH, realset.REALVAL_ITEMS_PATH)
        for i in read_committed(path)
    }
    assert not others & {(i.source, i.ref) for i in committed}
    counts = Counter(i.source for i in committed)
    assert counts == {
        "semeval14": realset.DELIGHT_TARGETS["semeval14"],
        "twcs": realset.DELIGHT_TARGETS["twcs_opening"],
    }
    texts = {i.item_id: i.text for i in realset.load_items(realset.DELIGHT_ITEMS_PATH).items}
    for item in committed:
        if item.source == "semeval14":  # positive single-aspect review sentences, from the test split
            assert item.split == "test" and item.weak["sentiment"] == "positive"
        else:  # conversation openers to a brand with a praise word
            assert item.subset == ["opening"] and realset.OUTCOME_CUE.search(str(texts[item.item_id]))
    raw = [json.loads(line) for line in realset.DELIGHT_ITEMS_PATH.read_text(encoding="utf-8").splitlines()]
    assert not any("text" in obj for obj in raw), "no text of these sources is committed"


@needs_datasets
def test_delight_labels_are_exactly_what_their_committed_passes_adjudicate_to() -> None:
    result, _, pass_a, pass_b, third = _readjudicated(
        realset.DELIGHT_ITEMS_PATH, realset.DELIGHT_LABELS_PATH, realset.DELIGHT_DIR, "delight"
    )
    assert set(third) <= {i for i in result.labels if pass_a[i] != pass_b[i]}
    # It exists to give the magic rule more magic to be judged on than the set's own 12.
    assert sum(labels["moment"] == "magic" for labels in result.labels.values()) >= 20


def test_build_delight_without_its_datasets_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "delight.jsonl"
    assert realset.main(["--data", str(tmp_path), "build-delight", "-o", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: datasets missing under {tmp_path}: customer_support_twitter, semeval14_restaurants"
    assert not output.exists()
