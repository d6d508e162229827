"""Unit checks of the pipeline's fast paths: they must give what the plain versions give."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from crawlers.pipelines import DuplicatePipeline, _int
from crawlers.state import CrawlState
from crawlers.text import bottom_k, jaccard, shingle_hashes, shingle_key, shingles


def test_shingle_hashes_give_the_same_jaccard_as_string_shingles() -> None:
    rng = random.Random(7)
    vocabulary = [f"w{i}" for i in range(60)]
    for _ in range(300):
        a = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(5, 30)))
        words = a.split()
        b = " ".join(words[: rng.randint(0, len(words))] + [rng.choice(vocabulary) for _ in range(rng.randint(0, 5))])
        expected = jaccard(shingles(a), shingles(b))
        assert jaccard(shingle_hashes(a), shingle_hashes(b)) == expected
        assert len(shingle_hashes(a)) == len(shingles(a))


def test_jaccard_edge_cases() -> None:
    assert jaccard(set(), set()) == 1.0
    assert jaccard({1}, set()) == 0.0
    assert jaccard({1, 2, 3, 4, 5}, {1, 2, 3, 4}) == 0.8


def test_bottom_k_is_the_smallest_hashes() -> None:
    grams = shingle_hashes("one two three four five six seven")
    assert bottom_k(grams) == sorted(grams)[:3]
    assert set(bottom_k(grams)) <= grams


def test_int_fast_path_matches_the_float_round_trip() -> None:
    for value in (0, 7, -3, 2**53, -(2**53), 2**60, "12", "3.9", 4.7, None, True, "x", [1]):
        try:
            expected: int | None = None if value is None or isinstance(value, bool) else int(float(value))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            expected = None
        assert _int(value) == expected, value


def _dup_pipeline() -> DuplicatePipeline:
    return DuplicatePipeline(crawler=None)  # type: ignore[arg-type]


def _post(native_id: str, text: str, duplicate_of: str | None = None) -> Any:
    return SimpleNamespace(id=f"m:{native_id}", text=text, duplicate_of=duplicate_of)


def test_duplicate_pipeline_marks_exact_and_near_copies_only() -> None:
    pipeline = _dup_pipeline()
    base = "the flight was delayed four hours and nobody from the crew told us why at all"
    posts = [
        _post("1", base),
        _post("2", "RT @someone: " + base.upper() + " https://example.com/x"),  # exact once normalised
        _post("3", base + " again"),  # one extra word pair: Jaccard 15/16
        _post("4", "lovely crew and a smooth landing, thank you so much for the upgrade today"),
        _post("5", "thanks all"),  # too short to mark
        _post("6", "thanks all"),
        _post("7", base, duplicate_of="m:0"),  # already marked by the spider: kept
    ]
    for post in posts:
        pipeline.process_item(post)
    assert [p.duplicate_of for p in posts] == [None, "m:1", "m:1", None, None, None, "m:0"]
    assert shingle_key(posts[1].text) == shingle_key(base)


def test_duplicate_window_forgets_old_originals() -> None:
    pipeline = _dup_pipeline()
    pipeline.WINDOW = 2
    texts = [
        "alpha beta gamma delta epsilon zeta eta theta",
        "one two three four five six seven eight",
        "red orange yellow green blue indigo violet black",
    ]
    for n, text in enumerate(texts):
        pipeline.process_item(_post(str(n), text))
    assert list(pipeline.recent) == ["m:1", "m:2"]
    # A near copy of the forgotten first text is no longer matched (its exact copy still is).
    near = _post("9", texts[0] + " iota")
    pipeline.process_item(near)
    assert near.duplicate_of is None
    exact = _post("10", texts[0])
    pipeline.process_item(exact)
    assert exact.duplicate_of == "m:0"


def test_cursor_advances_and_follows_outside_changes(tmp_path: Path) -> None:
    state = CrawlState(source="mastodon", query="q", path=tmp_path / "s.json")
    t0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
    state.advance(None)
    assert state.cursor is None
    state.advance(t0)
    assert state.cursor == t0.isoformat()
    state.advance(t0 - timedelta(hours=1))  # older: no move
    assert state.cursor == t0.isoformat()
    # Someone sets the cursor directly (a loaded state file does): advance() must see it.
    state.cursor = (t0 + timedelta(days=1)).isoformat()
    state.advance(t0 + timedelta(hours=2))
    assert state.cursor == (t0 + timedelta(days=1)).isoformat()
    state.advance(t0 + timedelta(days=2))
    assert state.cursor_time == t0 + timedelta(days=2)
    state.save()
    assert "_parsed_cursor" not in (tmp_path / "s.json").read_text(encoding="utf-8")
