"""Crawl behaviour end to end: incremental re-runs, politeness, bad input, brands, health."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from crawl_helpers import DATA, REPO, Crawl, load_recording, run_cli, write_recording

from crawlers.mockserver import running_server

TAG = "/api/v1/timelines/tag/northwindair"


def _status(native_id: str, created_at: str | None, content: Any, **extra: Any) -> dict[str, Any]:
    """A Mastodon Status in the documented shape (only what varies is passed)."""
    status = copy.deepcopy(load_recording("mastodon/tag_timeline.json")[0]["response"]["json"][1])
    status.update({"id": native_id, "created_at": created_at, "content": content, "reblog": None, "mentions": []})
    status.update(extra)
    return status


def _page(statuses: list[Any], next_max_id: str | None = None, **response: Any) -> dict[str, Any]:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if next_max_id:
        headers["Link"] = f'<{{base_url}}{TAG}?max_id={next_max_id}>; rel="next"'
    return {"status": 200, "headers": headers, "json": statuses, **response}


def test_incremental_reruns_fetch_only_new_and_repoll_recent(crawl: Crawl, tmp_path: Path) -> None:
    first = crawl("mastodon", "mastodon", "northwindair", "--as-of", "2026-11-20T12:00:00Z")
    assert first.stats["items"] == 5

    # Two hours later: one new status on top, and more engagement on an old one.
    interactions = load_recording("mastodon/tag_timeline.json")
    page = interactions[0]["response"]["json"]
    page[0]["favourites_count"] = 50
    page.insert(0, _status("1101", "2026-11-20T13:00:00.000Z", "<p>Northwind lost my bag too</p>"))
    newer = write_recording(tmp_path / "newer" / "rec.json", interactions)
    second = crawl(newer, "mastodon", "northwindair", "--as-of", "2026-11-20T14:00:00Z")
    posts = second.by_native_id()
    assert set(posts) == {"1101", "1100", "1099", "1098", "1090", "1089"}
    assert second.stats["repolled"] == 5  # everything from the last 72h is polled again
    history = posts["1100"].engagement_history
    assert [(s.at.hour, s.likes) for s in history] == [(12, 12), (14, 50)]
    assert len(posts["1101"].engagement_history) == 1

    # Four days later nothing is new or recent: paging stops at the cursor, nothing is written.
    third = crawl(newer, "mastodon", "northwindair", "--as-of", "2026-11-24T12:00:00Z")
    assert third.posts == []
    assert third.stats["drops"]["already_seen"] == 4
    assert not any("max_id=" in r for r in third.requests)  # the second page was never fetched
    assert third.returncode == 0 and third.stats["healthy"] is True


def test_429_waits_for_retry_after_then_succeeds(crawl: Crawl, tmp_path: Path) -> None:
    ok = load_recording("mastodon/tag_timeline.json")
    ok[0]["responses"] = [
        {"status": 429, "headers": {"Retry-After": "1"}, "json": {"error": "Too many requests"}},
        ok[0].pop("response"),
    ]
    result = crawl(write_recording(tmp_path / "r" / "rec.json", ok), "mastodon", "northwindair")
    assert result.returncode == 0, result.stderr
    assert len(result.posts) == 5
    tag_requests = [
        t for r, t in zip(result.requests, result.request_times, strict=True) if r.startswith(f"GET {TAG}?")
    ]
    assert tag_requests[1] - tag_requests[0] >= 0.9  # fast mode backs off 0.05s; only Retry-After explains 1s
    assert result.stats["errors"] == 0


def test_rate_limit_headers_hold_the_next_request(crawl: Crawl, tmp_path: Path) -> None:
    interactions = load_recording("mastodon/tag_timeline.json")
    interactions[0]["response"]["headers"].update({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"})
    result = crawl(write_recording(tmp_path / "r" / "rec.json", interactions), "mastodon", "northwindair")
    assert len(result.posts) == 5
    assert result.gap(f"{TAG}?limit", "max_id=1098") >= 0.9


def test_500_then_success_is_retried(crawl: Crawl, tmp_path: Path) -> None:
    interactions = load_recording("reddit/search.json")
    interactions[0]["responses"] = [{"status": 500, "body": "Internal Server Error"}, interactions[0].pop("response")]
    result = crawl(write_recording(tmp_path / "r" / "rec.json", interactions), "reddit", "northwind air")
    assert result.returncode == 0, result.stderr
    assert len(result.posts) == 3
    assert sum(r.startswith("GET /search.json") for r in result.requests) == 3  # 500, retry, page 2
    assert result.stats["errors"] == 0 and result.stats["healthy"] is True


def test_robots_txt_disallow_is_obeyed(crawl: Crawl, tmp_path: Path) -> None:
    interactions = load_recording("mastodon/tag_timeline.json")
    interactions.append(
        {
            "request": {"method": "GET", "path": "/robots.txt"},
            "response": {
                "status": 200,
                "headers": {"Content-Type": "text/plain"},
                "body": "User-agent: *\nDisallow: /api/\n",
            },
        }
    )
    result = crawl(write_recording(tmp_path / "r" / "rec.json", interactions), "mastodon", "northwindair")
    assert result.posts == []
    assert result.requests == ["GET /robots.txt"]
    assert result.stats["drops"] == {"robots_disallowed": 1}


def test_malformed_and_partial_records_are_counted_and_crawl_goes_on(crawl: Crawl, tmp_path: Path) -> None:
    statuses = [
        _status("2001", "2026-11-20T11:00:00.000Z", "<p>Northwind Air good flight, thank you crew</p>"),
        {"content": "<p>a status without an id</p>"},
        "not even an object",
        _status("2003", None, None),  # nothing to say: dropped
        _status("2004", "yesterday-ish", "<p>Northwind Air date is garbage but the text is fine</p>"),
        _status("2005", "2026-11-20T10:00:00.000Z", "<p>Northwind counts are junk</p>", favourites_count="lots"),
    ]
    interactions = [
        {"request": {"method": "GET", "path": TAG}, "response": _page(statuses, next_max_id="2000")},
        {
            "request": {"method": "GET", "path": TAG, "query": {"max_id": "2000"}},
            "response": {"status": 200, "headers": {"Content-Type": "application/json"}, "body": '[{"id": "19'},
        },
    ]
    result = crawl(write_recording(tmp_path / "r" / "rec.json", interactions), "mastodon", "northwindair")
    posts = result.by_native_id()
    assert set(posts) == {"2001", "2004", "2005"}
    assert posts["2004"].created_at is None  # partial: kept without a date
    assert posts["2005"].engagement.likes is None and posts["2005"].engagement.shares == 1
    drops = result.stats["drops"]
    assert drops["unexpected_layout"] == 2 and drops["empty_text"] == 1
    assert drops["malformed_json"] == 1 and drops["partial_bad_timestamp"] == 1
    assert result.stats["errors"] == 1 and "malformed JSON" in result.stats["error_samples"][0]
    assert result.returncode == 0  # some good pages: the source is healthy


def test_wrong_content_type_and_changed_layout(crawl: Crawl, tmp_path: Path) -> None:
    html = [
        {
            "request": {"method": "GET", "path": "/api/v1/search_by_date"},
            "response": {"status": 200, "headers": {"Content-Type": "text/html"}, "body": "<html>Maintenance</html>"},
        }
    ]
    result = crawl(write_recording(tmp_path / "h" / "rec.json", html), "hackernews", "northwind air")
    assert result.posts == []
    assert result.stats["drops"]["wrong_content_type"] == 2  # stories and comments
    assert result.returncode == 1 and result.stats["healthy"] is False

    changed = [{"request": {"method": "GET", "path": "/search.json"}, "response": {"json": {"data": {"things": []}}}}]
    result = crawl(write_recording(tmp_path / "c" / "rec.json", changed), "reddit", "northwind air")
    assert result.stats["drops"] == {"unexpected_layout": 1}
    assert "expected a Listing" in result.stats["error_samples"][0]


def test_brand_matching_with_config_and_near_duplicates(crawl: Crawl, tmp_path: Path) -> None:
    statuses = [
        _status(
            "3001",
            "2026-11-20T11:00:00.000Z",
            "<p>My lost bag on Northwind flight NW12 is still in Oslo, third day now</p>",
        ),
        _status(
            "3002",
            "2026-11-20T11:05:00.000Z",
            "<p>RT @maria: My lost bag on Northwind flight NW12 is still in Oslo, third day now!</p>",
        ),
        _status(
            "3003", "2026-11-20T11:10:00.000Z", "<p>Contoso train late again, so I missed the Northwind Air flight</p>"
        ),
        _status("3004", "2026-11-20T11:15:00.000Z", "<p>Northwind Traders sample database recipe for SQL class</p>"),
        _status("3005", "2026-11-20T11:20:00.000Z", "<p>Lovely sunset over the harbour tonight, no travel today</p>"),
        _status(
            "3006",
            "2026-11-20T11:25:00.000Z",
            "",
            reblog=_status("2999", "2026-11-20T09:00:00.000Z", "<p>Northwind Air boarding was smooth today</p>"),
        ),
    ]
    config = tmp_path / "brands.yaml"
    config.write_text(
        """
contact_url: https://example.org/care-team
brands:
  - name: Northwind Air
    names: ["Northwind Air"]
    handles: ["@northwindair"]
    keywords: ['"lost bag" AND (northwind OR NW*)']
    exclude: ['"Northwind Traders"']
  - name: Contoso Rail
    keywords: ['contoso AND (train OR rail)']
""",
        encoding="utf-8",
    )
    recording = write_recording(
        tmp_path / "b" / "rec.json", [{"request": {"method": "GET", "path": TAG}, "response": _page(statuses)}]
    )
    result = crawl(recording, "mastodon", "northwindair", "--config", str(config))
    posts = result.by_native_id()
    assert set(posts) == {"3001", "3002", "3003", "3006"}
    assert posts["3001"].brand == ["Northwind Air"]
    assert posts["3003"].brand == ["Northwind Air", "Contoso Rail"]  # kept once, for both
    assert result.stats["drops"]["no_brand_match"] == 2  # the excluded one and the unrelated one
    assert posts["3002"].duplicate_of == "mastodon:3001"  # near-duplicate repost
    assert posts["3001"].duplicate_of is None
    assert posts["3006"].duplicate_of == "mastodon:2999"  # a boost of another status


def test_user_agent_names_project_and_contact(tmp_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "brands.yaml"
    config.write_text("contact_url: https://example.org/care-team\nbrands: []\n", encoding="utf-8")
    code = (
        "from crawlers.runner import build_settings; from moments.config import load_config; "
        f"print(build_settings(load_config({str(config)!r}))['USER_AGENT'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.startswith("Moments/") and "+https://example.org/care-team" in out


def test_source_down_is_unhealthy_but_reported(crawl: Crawl) -> None:
    result = crawl(None, "mastodon", "northwindair", "--base-url", "http://127.0.0.1:9")
    assert result.returncode == 1  # the work failed (exit 2 is for bad usage)
    assert result.stats["healthy"] is False and "unreachable" in result.stats["health_reason"]
    assert result.stats["errors"] >= 1 and result.stats["items"] == 0
    assert "UNHEALTHY" in result.stderr


def test_output_falling_to_zero_is_unhealthy(crawl: Crawl, tmp_path: Path, tmp_home: Path) -> None:
    assert crawl("mastodon", "mastodon", "northwindair").stats["parsed"] == 5
    empty = [{"request": {"method": "GET", "path": TAG}, "response": _page([])}]
    result = crawl(write_recording(tmp_path / "e" / "rec.json", empty), "mastodon", "northwindair")
    assert result.returncode == 1
    assert "fell to zero" in result.stats["health_reason"]
    health = json.loads((tmp_home / "crawl-state" / "health.json").read_text(encoding="utf-8"))
    assert health["mastodon:northwindair"]["healthy"] is False
    assert health["mastodon:northwindair"]["last_success"] == "2026-11-20T12:00:00+00:00"


def test_replay_clock_from_environment(tmp_home: Path) -> None:
    with running_server(Path(__file__).parent / "recordings" / "rss") as server:
        result = run_cli(
            ["rss", "--query", "/feed.xml", "--base-url", server.base_url],
            tmp_home,
            env={"MOMENTS_AS_OF": "2026-11-21T08:30:00+01:00"},
        )
    assert result.posts and all(p.crawled_at.isoformat() == "2026-11-21T07:30:00+00:00" for p in result.posts)
    assert all(s.at == p.crawled_at for p in result.posts for s in p.engagement_history)


def test_since_limits_to_recent_posts(crawl: Crawl) -> None:
    result = crawl("hackernews", "hackernews", "northwind air", "--since", "2026-11-20T09:00:00Z")
    assert {p.native_id for p in result.posts} == {"4200001", "4200005"}
    assert any("numericFilters=created_at_i%3E1795165200" in r for r in result.requests)
    assert result.stats["drops"] == {"before_since": 1}


def test_crawl_twice_in_one_process_and_many_sources(tmp_home: Path) -> None:
    # The flows package calls crawl() repeatedly; the reactor cannot restart, so later calls use a child.
    code = """
import json, sys
from crawlers import crawl
from crawlers.runner import CrawlJob, crawl_many
from crawlers.mockserver import serve_recordings
with serve_recordings(sys.argv[1]) as base:
    a = crawl("mastodon", "northwindair", base_url=base, output=sys.argv[2] + "/a.jsonl", as_of="2026-11-20T12:00:00Z")
    b = crawl("rss", "/feed.xml", base_url=base, output=sys.argv[2] + "/b.jsonl", as_of="2026-11-20T12:00:00Z")
    many = crawl_many([CrawlJob("reddit", "northwind air", base), CrawlJob("lemmy", "x", "http://127.0.0.1:9")],
                      settings={"MOMENTS_CRAWL_FAST": True})
print(json.dumps([a.items, b.items, [(s.source, s.items, s.healthy) for s in many]]))
"""
    recordings = Path(__file__).parent / "recordings"
    done = subprocess.run(
        [sys.executable, "-c", code, str(recordings), str(tmp_home)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "MOMENTS_HOME": str(tmp_home), "MOMENTS_CRAWL_FAST": "1"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    a_items, b_items, many = json.loads(done.stdout.strip().splitlines()[-1])
    assert [a_items, b_items] == [5, 2]
    # One source down does not stop the other.
    assert many == [["reddit", 3, True], ["lemmy", 0, False]]


def test_crawl_help_teaches(tmp_home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "moments.cli", "crawl", "--help"], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert "examples:" in done.stdout and "--as-of" in done.stdout and "appstore" in done.stdout
    assert "--ids FILE" in done.stdout and "gone" in done.stdout


def test_import_csv_needs_no_server(crawl: Crawl) -> None:
    result = crawl(None, "import", str(DATA / "export.csv"))
    assert result.stats["requests"] == 1 and result.stats["items"] == 3
