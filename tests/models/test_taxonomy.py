"""Custom taxonomies work without retraining (zero/few-shot prototypes)."""

from __future__ import annotations

import math

import pytest

from models import TOUCHPOINTS, Taxonomy, load_classifier

CUSTOM = {
    "mode": "replace",
    "touchpoints": [
        {
            "id": "loyalty",
            "label": "Loyalty program",
            "description": "points, miles, status tiers, member rewards",
            "examples": ["my miles never posted to my account", "gold status perks are great"],
        },
        {
            "id": "wifi",
            "label": "Onboard wifi",
            "description": "internet connection on the plane or in the hotel",
            "examples": ["the wifi kept dropping", "paid for wifi that never worked"],
        },
        {
            "id": "food",
            "label": "Food",
            "description": "meals, snacks, drinks, taste of the food",
            "examples": ["the pasta was cold", "best breakfast buffet ever"],
        },
    ],
}


@pytest.fixture(scope="module")
def custom():  # type: ignore[no-untyped-def]
    return load_classifier(taxonomy=CUSTOM)


def test_replace_taxonomy_zero_shot(custom) -> None:  # type: ignore[no-untyped-def]
    texts = [
        "still waiting for my reward points from last month's trip",
        "could not connect to the internet for the whole flight",
        "the sandwich they served tasted awful",
    ]
    results = custom.classify(texts)
    assert [r.touchpoint for r in results] == ["loyalty", "wifi", "food"]
    for r in results:
        assert set(r.touchpoint_scores) == {"loyalty", "wifi", "food"}
        assert math.isclose(sum(r.touchpoint_scores.values()), 1.0, abs_tol=1e-4)
        assert r.sentiment in ("negative", "neutral", "positive")


def test_extend_taxonomy_keeps_defaults() -> None:
    tax = Taxonomy.from_config({"mode": "extend", "touchpoints": CUSTOM["touchpoints"][:1]})
    assert tax.ids == (*TOUCHPOINTS, "loyalty")
    clf = load_classifier(taxonomy=tax)
    (miles, late) = clf.classify(["my frequent flyer miles never posted", "my package is two weeks late"])
    assert miles.touchpoint == "loyalty"
    assert late.touchpoint == "fulfilment"


def test_bad_taxonomy_config() -> None:
    with pytest.raises(ValueError):
        Taxonomy.from_config({"mode": "merge", "touchpoints": [{"id": "x"}]})
    with pytest.raises(ValueError):
        Taxonomy.from_config([{"id": "a"}, {"id": "a"}])
    with pytest.raises(ValueError):
        Taxonomy.from_config([{"description": "no id"}])
