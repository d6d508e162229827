"""Authenticated crawls: Mastodon token search, Bluesky app password, Reddit OAuth.

The recordings require the Authorization header, so a spider that forgot it
gets 404s and the assertions fail.
"""

from __future__ import annotations

from pathlib import Path

from crawl_helpers import Crawl, load_recording, write_recording


def _config(tmp_path: Path, credentials: str) -> str:
    path = tmp_path / "brands.yaml"
    path.write_text(f"contact_url: https://example.org/c\ncredentials:\n{credentials}\nbrands: []\n", encoding="utf-8")
    return str(path)


def test_mastodon_token_adds_v2_search(crawl: Crawl, tmp_path: Path) -> None:
    timeline = load_recording("mastodon/tag_timeline.json")
    found = timeline[0]["response"]["json"][0] | {"id": "1200", "content": "<p>Northwind Air search-only hit</p>"}
    interactions = [
        *timeline,
        {
            "request": {
                "method": "GET",
                "path": "/api/v2/search",
                "query": {"q": "northwindair", "type": "statuses"},
                "headers": {"Authorization": "Bearer tok-123"},
            },
            # The timeline's newest status comes back from search too: written once.
            "response": {
                "json": {"accounts": [], "statuses": [found, timeline[0]["response"]["json"][0]], "hashtags": []}
            },
        },
    ]
    config = _config(tmp_path, '  mastodon: {token: "${TEST_MASTODON_TOKEN}"}')
    result = crawl(
        write_recording(tmp_path / "m" / "rec.json", interactions),
        "mastodon",
        "northwindair",
        "--config",
        config,
        env={"TEST_MASTODON_TOKEN": "tok-123"},
    )
    ids = [p.native_id for p in result.posts]
    assert "1200" in ids and sorted(ids) == sorted(set(ids))
    assert len(ids) == 6
    # brands: [] in the config means no brand matching: every post is kept for the query.
    assert all(p.brand == ["northwindair"] for p in result.posts)


def test_bluesky_app_password_session(crawl: Crawl, tmp_path: Path) -> None:
    search = load_recording("bluesky/search.json")
    for interaction in search:
        interaction["request"]["headers"] = {"Authorization": "Bearer jwt-abc"}
    session = {
        "request": {"method": "POST", "path": "/xrpc/com.atproto.server.createSession"},
        "response": {
            "json": {"accessJwt": "jwt-abc", "refreshJwt": "r", "handle": "me.bsky.social", "did": "did:plc:me"}
        },
    }
    config = _config(tmp_path, "  bluesky: {identifier: me.bsky.social, app_password: abcd-efgh}")
    result = crawl(
        write_recording(tmp_path / "b" / "rec.json", [session, *search]), "bluesky", "northwind air", "--config", config
    )
    assert len(result.posts) == 3
    assert result.requests[1].startswith("POST /xrpc/com.atproto.server.createSession")
    assert {p.author.followers for p in result.posts} == {812, 45}


def test_reddit_oauth_client_credentials(crawl: Crawl, tmp_path: Path) -> None:
    listing = load_recording("reddit/search.json")
    for interaction in listing:
        interaction["request"]["headers"] = {"Authorization": "bearer oauth-xyz"}
    token = {
        "request": {
            "method": "POST",
            "path": "/api/v1/access_token",
            "headers": {"Authorization": "Basic Y2lkOnNlY3JldA=="},  # base64("cid:secret")
        },
        "response": {"json": {"access_token": "oauth-xyz", "token_type": "bearer", "expires_in": 86400, "scope": "*"}},
    }
    config = _config(tmp_path, "  reddit: {client_id: cid, client_secret: secret}")
    result = crawl(
        write_recording(tmp_path / "r" / "rec.json", [token, *listing]), "reddit", "northwind air", "--config", config
    )
    assert {p.native_id for p in result.posts} == {"t3_1abc01", "t3_1abc02", "t3_1abc03"}
    assert result.stats["errors"] == 0
