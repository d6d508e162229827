"""Re-polling known posts by id (``moments crawl SOURCE --ids FILE``), end to end.

Each source is crawled for real, in a child process, against the recording
server (``recordings/<source>/by_id.json``); between two polls the running
server's answers are replaced so engagement climbs.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from crawl_helpers import RECORDINGS, CrawlResult, load_recording, run_cli

from crawlers.mockserver import MockServer, running_server
from crawlers.runner import BY_ID_SOURCES, normalize_ids
from crawlers.state import add_snapshot
from moments.cli import main as moments_main

T1 = "2026-11-20T12:00:00Z"
T2 = "2026-11-20T14:00:00Z"
BUMP = 10
# The counters the bump raises (one per source is checked: the case's metric).
_COUNTERS = {"favourites_count", "likeCount", "score", "points"}


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


@dataclass
class Case:
    ids: list[str]  # asked for, the last one gone
    found: set[str]  # native ids written
    main: str  # the post whose counter is checked
    metric: str  # Engagement field
    value: int  # its recorded value


BSKY = "at://did:plc:{}/app.bsky.feed.post/{}"
CASES = {
    "mastodon": Case(["1100", "1050", "1000"], {"1100", "1050"}, "1100", "likes", 12),
    "bluesky": Case(
        [BSKY.format("aaa111", "3kabc1"), BSKY.format("bbb222", "3kabc2"), BSKY.format("ccc333", "3kgone")],
        {BSKY.format("aaa111", "3kabc1"), BSKY.format("bbb222", "3kabc2")},
        BSKY.format("aaa111", "3kabc1"),
        "likes",
        15,
    ),
    "reddit": Case(["t3_1abc01", "t3_1abc03", "t3_1gone9"], {"t3_1abc01", "t3_1abc03"}, "t3_1abc01", "score", 152),
    "hackernews": Case(["4200001", "4200005", "4199999"], {"4200001", "4200005"}, "4200001", "score", 231),
    "lemmy": Case(["post/501", "comment/9001", "post/499"], {"post/501", "comment/9001"}, "post/501", "score", 41),
}


def _bumped(value: Any) -> Any:
    """A copy of a recording with every engagement counter raised by :data:`BUMP`."""
    if isinstance(value, list):
        return [_bumped(v) for v in value]
    if isinstance(value, dict):
        return {
            k: v + BUMP if k in _COUNTERS and type(v) is int else _bumped(v)  # type(): not bools
            for k, v in value.items()
        }
    return value


def _poll(server: MockServer, home: Path, source: str, ids: Path, as_of: str, *extra: str) -> CrawlResult:
    return run_cli([source, "--ids", str(ids), "--base-url", server.base_url, "--as-of", as_of, *extra], home)


def _ids_file(path: Path, ids: list[str]) -> Path:
    path.write_text("# native ids, one a line\n" + "\n".join(ids) + "\n\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("source", list(CASES))
def test_repoll_by_id_appends_one_snapshot_per_poll(source: str, tmp_home: Path, tmp_path: Path) -> None:
    case = CASES[source]
    ids = _ids_file(tmp_path / "ids.txt", case.ids)
    recording = load_recording(f"{source}/by_id.json")
    with running_server(recording) as server:
        first = _poll(server, tmp_home, source, ids, T1)
        assert first.returncode == 0, first.stderr
        posts = first.by_native_id()
        assert set(posts) == case.found
        assert getattr(posts[case.main].engagement, case.metric) == case.value
        assert all(p.id == f"{source}:{p.native_id}" and p.brand == [] for p in first.posts)
        assert all([s.at for s in p.engagement_history] == [_at(T1)] for p in first.posts)
        # The missing post is a counted drop, not an error: the source stays healthy.
        assert first.stats["drops"] == {"gone": 1}
        assert first.stats["errors"] == 0 and first.stats["healthy"] is True and first.stats["ids"] == 3
        assert not any("search" in r for r in server.request_log)  # fetched by id, nothing searched

        server.replace(_bumped(recording))  # engagement climbs before the next poll
        second = _poll(server, tmp_home, source, ids, T2)
        assert second.returncode == 0, second.stderr
        assert set(second.by_native_id()) == case.found and second.stats["repolled"] == 2
        main = second.by_native_id()[case.main]
        history = main.engagement_history
        assert [s.at for s in history] == [_at(T1), _at(T2)]
        assert [getattr(s, case.metric) for s in history] == [case.value, case.value + BUMP]
        assert getattr(main.engagement, case.metric) == case.value + BUMP
        assert all(len(p.engagement_history) == 2 for p in second.posts)
    # (A replay of the same poll time adds no snapshot: see the next test; that is the pipeline, not the spider.)
    # Without --query the snapshots are kept in their own state, which has no cursor.
    state = json.loads((tmp_home / "crawl-state" / source / "by_id.json").read_text(encoding="utf-8"))
    assert state["cursor"] is None and state["runs"] == []
    assert len(state["recent"][f"{source}:{case.main}"]["snapshots"]) == 2


def test_ids_crawl_shares_the_search_state_but_never_moves_its_cursor(tmp_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "brands.yaml"
    config.write_text(
        'brands:\n  - name: Northwind Air\n    names: ["Northwind Air"]\n    handles: ["@northwindair"]\n',
        encoding="utf-8",
    )
    state_path = tmp_home / "crawl-state" / "mastodon" / "northwindair.json"
    by_id = load_recording("mastodon/by_id.json")
    # 1050 is older than the cursor and was never seen by the search: a search would drop it as already seen.
    ids = _ids_file(tmp_path / "ids.txt", ["mastodon:1100", "1050"])
    with running_server(RECORDINGS / "mastodon") as server:
        search_args = ["mastodon", "--query", "northwindair", "--base-url", server.base_url, "--as-of", T1]
        search = run_cli(search_args, tmp_home)
        assert search.stats["items"] == 5
        before = json.loads(state_path.read_text(encoding="utf-8"))
        assert before["cursor"] == "2026-11-20T11:50:00+00:00"

        server.replace([RECORDINGS / "mastodon" / "tag_timeline.json", _bumped(by_id)])
        polled = _poll(server, tmp_home, "mastodon", ids, T2, "--query", "northwindair", "--config", str(config))
        assert polled.returncode == 0, polled.stderr
        posts = polled.by_native_id()
        assert set(posts) == {"1100", "1050"} and polled.stats["drops"] == {}
        assert [(s.at, s.likes) for s in posts["1100"].engagement_history] == [(_at(T1), 12), (_at(T2), 22)]
        assert [s.likes for s in posts["1050"].engagement_history] == [13]
        # A post asked for by id is kept even when its text no longer names the brand.
        assert posts["1100"].brand == ["Northwind Air"] and posts["1050"].brand == []
        assert polled.stats["repolled"] == 1

        after = json.loads(state_path.read_text(encoding="utf-8"))
        assert after["cursor"] == before["cursor"] and after["runs"] == before["runs"]
        assert [s["likes"] for s in after["recent"]["mastodon:1100"]["snapshots"]] == [12, 22]
        assert "mastodon:1050" in after["recent"]
        health = json.loads((tmp_home / "crawl-state" / "health.json").read_text(encoding="utf-8"))
        assert health["mastodon:northwindair"]["ids"] is None and health["mastodon:northwindair#ids"]["ids"] == 2

        # A replay of the same poll time adds no snapshot.
        again = _poll(server, tmp_home, "mastodon", ids, T2, "--query", "northwindair")
        assert [s.at for s in again.by_native_id()["1100"].engagement_history] == [_at(T1), _at(T2)]
        assert json.loads(state_path.read_text(encoding="utf-8"))["recent"] == after["recent"]


def test_a_5xx_is_an_error_not_gone(tmp_home: Path, tmp_path: Path) -> None:
    busy = {"request": {"path": "/api/v1/statuses/1101"}, "response": {"status": 503, "body": "busy"}}
    with running_server(busy) as server:
        result = _poll(server, tmp_home, "mastodon", _ids_file(tmp_path / "ids.txt", ["1101"]), T1)
    assert result.stats["drops"] == {} and result.stats["errors"] == 1
    assert "HTTP 503" in result.stats["error_samples"][0]
    # Every try answered 503: retried answers are not good ones, so the source is unhealthy.
    assert result.stats["retried_responses"] == 3
    assert result.returncode == 1 and result.stats["healthy"] is False


def test_add_snapshot_is_one_per_poll_time_in_time_order() -> None:
    history = add_snapshot([], {"at": "2026-11-20T12:00:00+00:00", "likes": 1})
    history = add_snapshot(history, {"at": "2026-11-20T14:00:00+00:00", "likes": 3})
    assert add_snapshot(history, {"at": "2026-11-20T12:00:00+00:00", "likes": 9}) == history
    replayed = add_snapshot(history, {"at": "2026-11-20T13:00:00+00:00", "likes": 2})
    assert [s["likes"] for s in replayed] == [1, 2, 3]


def test_ids_are_normalized() -> None:
    lines = ["  1100 ", "", "# a comment", "mastodon:1050", "1100", "bluesky:x"]
    assert normalize_ids("mastodon", lines) == ["1100", "1050", "bluesky:x"]
    assert set(CASES) == set(BY_ID_SOURCES)


def test_cli_ids_usage(tmp_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = _ids_file(tmp_path / "ids.txt", ["1"])
    assert moments_main(["crawl", "mastodon"]) == 2
    assert "--query is required (unless --ids is given)" in capsys.readouterr().err
    assert moments_main(["crawl", "appstore", "--ids", str(ids)]) == 2
    assert "appstore cannot fetch posts by id" in capsys.readouterr().err
    assert moments_main(["crawl", "reddit", "--ids", str(tmp_path / "missing.txt")]) == 2
    assert "no such file" in capsys.readouterr().err


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_mock_server_answers_can_change_while_it_runs() -> None:
    one = {"request": {"path": "/n"}, "response": {"json": {"n": 1}}}
    with running_server() as server:  # empty: everything a 404 until added
        server.add(one)
        assert _get(f"{server.base_url}/n") == {"n": 1}
        server.add({"request": {"path": "/n"}, "responses": [{"json": {"n": 2}}, {"json": {"n": 3}}]})
        assert [_get(f"{server.base_url}/n") for _ in range(3)] == [{"n": 2}, {"n": 3}, {"n": 3}]
        server.replace({"interactions": [one]})
        assert _get(f"{server.base_url}/n") == {"n": 1}

        # Replacing while requests are in flight: every answer is a whole old or new one.
        seen: list[Any] = []
        errors: list[BaseException] = []

        def hammer() -> None:
            try:
                seen.extend(_get(f"{server.base_url}/n") for _ in range(40))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        for n in range(40):
            server.replace([{"request": {"path": "/n"}, "response": {"json": {"n": n}}}])
        for thread in threads:
            thread.join(timeout=30)
        assert not errors and len(seen) == 160 and all(set(s) == {"n"} for s in seen)
        assert server.request_log[0] == "GET /n" and len(server.request_log) == 165
