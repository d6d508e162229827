"""Who reshared a post (``Post.reshares``), listed when it is re-polled by id, end to end.

Real ``moments crawl SOURCE --ids FILE`` runs in child processes against the
recording server: ``recordings/mastodon/reblogged_by.json`` (two pages linked by
a ``Link: rel="next"`` header) and ``recordings/bluesky/reposted_by.json``
(``getRepostedBy`` with a cursor, then ``getProfiles`` for follower counts).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from crawl_helpers import RECORDINGS, CrawlResult, load_recording, run_cli

from crawlers.mockserver import MockServer, running_server
from crawlers.spiders.base import MAX_RESHARE_PAGES
from crawlers.state import MAX_RESHARES_KEPT, CrawlState, merge_reshares
from moments.records import Post

T1 = "2026-11-20T12:00:00Z"
T2 = "2026-11-20T14:00:00Z"
T3 = "2026-11-20T16:00:00Z"
BSKY_POST = "at://did:plc:aaa111/app.bsky.feed.post/3kabc1"
BSKY_QUIET = "at://did:plc:bbb222/app.bsky.feed.post/3kabc2"  # repostCount 0
BSKY_GONE = "at://did:plc:ccc333/app.bsky.feed.post/3kgone"  # asked for in the recorded getPosts batch


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _ids_file(path: Path, ids: list[str]) -> Path:
    path.write_text("\n".join(ids) + "\n", encoding="utf-8")
    return path


def _poll(server: MockServer, home: Path, source: str, ids: Path, as_of: str, *extra: str) -> CrawlResult:
    """One crawl by id; the requests it made are attached (the log is cleared first)."""
    del server.request_log[:]
    result = run_cli([source, "--ids", str(ids), "--base-url", server.base_url, "--as-of", as_of, *extra], home)
    result.requests = list(server.request_log)
    return result


def _reshares(post: Post) -> list[tuple[str, int | None, datetime]]:
    return [(r.handle, r.followers, r.at) for r in post.reshares]


def _state(home: Path, source: str, name: str = "by_id") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((home / "crawl-state" / source / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _mastodon() -> list[dict[str, Any]]:
    return [*load_recording("mastodon/by_id.json"), *load_recording("mastodon/reblogged_by.json")]


def _reblogged_by(recording: list[dict[str, Any]], status_id: str, page: int) -> dict[str, Any]:
    """The interaction of one ``reblogged_by`` page (1: no ``max_id``) in a recording."""
    path = f"/api/v1/statuses/{status_id}/reblogged_by"
    pages = [i for i in recording if i["request"]["path"] == path]
    return next(i for i in pages if ("max_id" in i["request"].get("query", {})) == (page > 1))


def test_mastodon_repoll_lists_resharers_following_the_next_page(tmp_home: Path, tmp_path: Path) -> None:
    ids = _ids_file(tmp_path / "ids.txt", ["1100", "1050"])
    with running_server(_mastodon()) as server:
        result = _poll(server, tmp_home, "mastodon", ids, T1)
    assert result.returncode == 0, result.stderr
    assert result.stats["errors"] == 0 and result.stats["healthy"] is True
    assert sorted(p.native_id for p in result.posts) == ["1050", "1100"]  # each post written once
    posts = result.by_native_id()
    assert _reshares(posts["1100"]) == [
        ("anna@fosstodon.example", 5400, _at(T1)),
        ("ben", 310, _at(T1)),
        ("carla@mas.example", 0, _at(T1)),
        ("dev@social.example", 120000, _at(T1)),  # the second page, through the Link header
    ]
    assert _reshares(posts["1050"]) == [("eve", 77, _at(T1))]
    assert posts["1100"].engagement.shares == 30 and posts["1100"].crawled_at == _at(T1)
    listing = [r for r in result.requests if "/reblogged_by" in r]
    assert sorted(listing) == [
        "GET /api/v1/statuses/1050/reblogged_by?limit=80",
        "GET /api/v1/statuses/1100/reblogged_by?limit=80",
        "GET /api/v1/statuses/1100/reblogged_by?limit=80&max_id=20311",
    ]
    entry = _state(tmp_home, "mastodon")["recent"]["mastodon:1100"]
    assert entry["reshares_count"] == 30
    assert [(r["handle"], r["at"]) for r in entry["reshares"]][:1] == [("anna@fosstodon.example", _at(T1).isoformat())]


def test_bluesky_repoll_lists_reposters_with_follower_counts(tmp_home: Path, tmp_path: Path) -> None:
    ids = _ids_file(tmp_path / "ids.txt", [BSKY_POST, BSKY_QUIET, BSKY_GONE])
    recording = [*load_recording("bluesky/by_id.json"), *load_recording("bluesky/reposted_by.json")]
    with running_server(recording) as server:
        result = _poll(server, tmp_home, "bluesky", ids, T1)
    assert result.returncode == 0, result.stderr
    assert result.stats["errors"] == 0 and result.stats["drops"] == {"gone": 1} and len(result.posts) == 2
    posts = result.by_native_id()
    assert _reshares(posts[BSKY_POST]) == [
        ("kim.bsky.social", 2300, _at(T1)),
        ("joe.bsky.social", 45, _at(T1)),  # an author of the batch: its profile was already read
        ("lee.example.com", 19, _at(T1)),  # the second page, through the cursor
    ]
    assert posts[BSKY_QUIET].reshares == []
    reposted_by = [r for r in result.requests if "getRepostedBy" in r]
    assert len(reposted_by) == 2 and all("3kabc1" in r for r in reposted_by)  # none for a post nobody reposted
    assert "cursor=3lrepost2" in reposted_by[1]
    assert sum("getProfiles" in r for r in result.requests) == 2  # the authors, then the two new reposters


def test_a_later_poll_keeps_first_seen_times_and_skips_an_unchanged_count(tmp_home: Path, tmp_path: Path) -> None:
    ids = _ids_file(tmp_path / "ids.txt", ["1100", "1050"])
    first = _mastodon()
    later = copy.deepcopy(first)
    next(i for i in later if i["request"]["path"] == "/api/v1/statuses/1100")["response"]["json"]["reblogs_count"] = 31
    page1 = _reblogged_by(later, "1100", 1)["response"]["json"]
    fay = {**copy.deepcopy(page1[0]), "id": "20344", "username": "fay", "acct": "fay@other.example"}
    page1.insert(0, {**fay, "followers_count": 42})  # newest first
    page1[1]["followers_count"] = 9999  # anna gained followers since; her first-seen reach stays
    with running_server(first) as server:
        one = _poll(server, tmp_home, "mastodon", ids, T1)
        assert one.returncode == 0, one.stderr
        server.replace(later)
        two = _poll(server, tmp_home, "mastodon", ids, T2)
        assert two.returncode == 0, two.stderr
        three = _poll(server, tmp_home, "mastodon", ids, T3)
        assert three.returncode == 0, three.stderr

    old = [("anna@fosstodon.example", 5400), ("ben", 310), ("carla@mas.example", 0), ("dev@social.example", 120000)]
    expected = [*((h, f, _at(T1)) for h, f in old), ("fay@other.example", 42, _at(T2))]
    assert _reshares(two.by_native_id()["1100"]) == expected
    assert _reshares(two.by_native_id()["1050"]) == [("eve", 77, _at(T1))]
    assert [s.at for s in two.by_native_id()["1100"].engagement_history] == [_at(T1), _at(T2)]

    # Counts unchanged since a poll that listed them: no listing asked, the kept resharers written.
    assert not any("/reblogged_by" in r for r in three.requests)
    assert _reshares(three.by_native_id()["1100"]) == expected
    assert _reshares(three.by_native_id()["1050"]) == [("eve", 77, _at(T1))]
    entry = _state(tmp_home, "mastodon")["recent"]["mastodon:1100"]
    assert entry["reshares_count"] == 31 and len(entry["reshares"]) == 5 and len(entry["snapshots"]) == 3


def test_a_failing_listing_still_writes_the_post(tmp_home: Path, tmp_path: Path) -> None:
    ids = _ids_file(tmp_path / "ids.txt", ["1100", "1050"])
    recording = _mastodon()
    _reblogged_by(recording, "1100", 1)["response"] = {"status": 500, "body": "oops"}
    with running_server(recording) as server:
        result = _poll(server, tmp_home, "mastodon", ids, T1)
    assert result.returncode == 0, result.stderr
    assert result.stats["healthy"] is True and result.stats["errors"] == 0  # a warning, not an error
    posts = result.by_native_id()
    assert set(posts) == {"1100", "1050"}
    assert posts["1100"].reshares == [] and posts["1100"].engagement.shares == 30
    assert _reshares(posts["1050"]) == [("eve", 77, _at(T1))]  # the other post's listing is unaffected
    assert sum("1100/reblogged_by" in r for r in result.requests) == 4  # retried as any 5xx is, then given up
    assert "resharers of 1100 not read in full (HTTP 500" in result.stderr
    # Not listed: the next poll asks again even though the count is the same.
    assert "reshares_count" not in _state(tmp_home, "mastodon")["recent"]["mastodon:1100"]


def test_listing_stops_after_max_pages(tmp_home: Path, tmp_path: Path) -> None:
    recording = load_recording("mastodon/by_id.json")
    path = "/api/v1/statuses/1100/reblogged_by"
    for page in range(1, MAX_RESHARE_PAGES + 3):
        query = {"limit": "80", **({"max_id": str(page)} if page > 1 else {})}
        link = f'<{{base_url}}{path}?limit=80&max_id={page + 1}>; rel="next"'
        account = {"id": str(page), "acct": f"user{page}", "followers_count": page}
        response = {"status": 200, "headers": {"Link": link}, "json": [account]}
        recording.append({"request": {"path": path, "query": query}, "response": response})
    with running_server(recording) as server:
        result = _poll(server, tmp_home, "mastodon", _ids_file(tmp_path / "ids.txt", ["1100"]), T1)
    assert result.returncode == 0, result.stderr
    assert sum(path in r for r in result.requests) == MAX_RESHARE_PAGES
    assert [r.handle for r in result.posts[0].reshares] == [f"user{n}" for n in range(1, MAX_RESHARE_PAGES + 1)]


def test_a_keyword_crawl_asks_for_no_resharers_and_keeps_the_known_ones(tmp_home: Path, tmp_path: Path) -> None:
    ids = _ids_file(tmp_path / "ids.txt", ["1100"])
    with running_server(RECORDINGS / "mastodon") as server:  # timeline, by id and reblogged_by all answered
        polled = _poll(server, tmp_home, "mastodon", ids, T1, "--query", "northwindair")
        assert len(_reshares(polled.posts[0])) == 4

        del server.request_log[:]
        search = run_cli(
            ["mastodon", "--query", "northwindair", "--base-url", server.base_url, "--as-of", T2], tmp_home
        )
        assert search.returncode == 0, search.stderr
        assert any("/timelines/tag/" in r for r in server.request_log)
        assert not any("reblogged_by" in r for r in server.request_log)
    posts = search.by_native_id()
    assert search.stats["items"] == 5 and posts["1090"].engagement.shares == 80 and posts["1090"].reshares == []
    # 1100 is re-polled by the search: it carries (and the state keeps) the resharers the crawl by id listed.
    assert [(r.handle, r.at) for r in posts["1100"].reshares][:1] == [("anna@fosstodon.example", _at(T1))]
    entry = _state(tmp_home, "mastodon", "northwindair")["recent"]["mastodon:1100"]
    assert len(entry["reshares"]) == 4 and entry["reshares_count"] == 30 and len(entry["snapshots"]) == 2


def test_merge_reshares_keeps_the_first_seen_and_caps_the_list() -> None:
    t1, t2 = _at(T1).isoformat(), _at(T2).isoformat()
    known = [{"handle": "a", "followers": None, "at": t1}, {"handle": "b", "followers": 5, "at": t1}]
    seen = [
        {"handle": "c", "followers": 1, "at": t2},
        {"handle": "a", "followers": 7, "at": t2},  # fills a's unknown reach, keeps its time
        {"handle": "b", "followers": 6, "at": t2},
        {"handle": "", "at": t2},
        {"handle": "d", "at": "not a time"},
        "junk",
    ]
    merged = merge_reshares(known, seen)
    assert [(r["handle"], r["followers"], r["at"]) for r in merged] == [("a", 7, t1), ("b", 5, t1), ("c", 1, t2)]
    # A replay of an earlier poll time moves an account's first-seen time back (with the reach seen then).
    replayed = merge_reshares(merged, [{"handle": "c", "followers": 2, "at": t1}])
    assert replayed[-1] == {"handle": "c", "followers": 2, "at": t1}
    many = [{"handle": f"h{n}", "followers": n, "at": t2} for n in range(MAX_RESHARES_KEPT + 10)]
    capped = merge_reshares(many, [{"handle": "early", "followers": 1, "at": t1}])
    assert len(capped) == MAX_RESHARES_KEPT and capped[0]["handle"] == "early"
    assert capped[-1]["handle"] == f"h{MAX_RESHARES_KEPT - 2}"


def test_saving_a_poll_merges_resharers_with_the_state_on_disk(tmp_path: Path) -> None:
    t1, t2 = _at(T1).isoformat(), _at(T2).isoformat()
    snap = {"likes": 1, "at": t1}
    disk = CrawlState.load(tmp_path, "mastodon", "q")
    disk.recent["mastodon:1"] = {"created_at": t1, "snapshots": [snap], "reshares": [{"handle": "a", "at": t1}]}
    disk.save()
    mine = CrawlState.load(tmp_path, "mastodon", "q")
    mine.recent["mastodon:1"] = {
        "created_at": t1,
        "snapshots": [{"likes": 2, "at": t2}],
        "reshares": [{"handle": "b", "followers": 3, "at": t2}, {"handle": "a", "followers": 4, "at": t2}],
        "reshares_count": 2,
    }
    mine.save_polled({"mastodon:1"}, _at(T2))
    entry = CrawlState.load(tmp_path, "mastodon", "q").recent["mastodon:1"]
    assert [(r["handle"], r["followers"], r["at"]) for r in entry["reshares"]] == [("a", 4, t1), ("b", 3, t2)]
    assert entry["reshares_count"] == 2 and [s["likes"] for s in entry["snapshots"]] == [1, 2]
