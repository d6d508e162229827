"""A local Mastodon for watch tests: one tag timeline and statuses by id, whose engagement the test sets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

TAG = "northwindair"


def status(
    native_id: str,
    text: str,
    created_at: datetime,
    *,
    reblogs: int = 0,
    favourites: int = 0,
    replies: int = 0,
    followers: int = 0,
    handle: str = "traveller",
) -> dict[str, Any]:
    """A Mastodon status as ``/api/v1/statuses/:id`` and the tag timeline return it."""
    return {
        "id": native_id,
        "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "in_reply_to_id": None,
        "sensitive": False,
        "spoiler_text": "",
        "visibility": "public",
        "language": "en",
        "uri": f"https://mastodon.example/users/{handle}/statuses/{native_id}",
        "url": f"https://mastodon.example/@{handle}/{native_id}",
        "replies_count": replies,
        "reblogs_count": reblogs,
        "favourites_count": favourites,
        "content": f"<p>{text}</p>",
        "reblog": None,
        "account": {
            "id": f"acct-{handle}",
            "username": handle,
            "acct": handle,
            "display_name": handle.title(),
            "url": f"https://mastodon.example/@{handle}",
            "followers_count": followers,
        },
        "media_attachments": [],
        "mentions": [],
        "tags": [{"name": TAG, "url": f"https://mastodon.example/tags/{TAG}"}],
        "emojis": [],
    }


def recordings(statuses: list[dict[str, Any]]) -> dict[str, Any]:
    """The tag timeline (newest first) and each status by id, for ``MockServer.replace``."""
    timeline = sorted(statuses, key=lambda s: s["id"], reverse=True)
    interactions: list[dict[str, Any]] = [
        {
            "request": {"method": "GET", "path": f"/api/v1/timelines/tag/{TAG}"},
            "response": {"status": 200, "json": timeline},
        }
    ]
    interactions += [
        {"request": {"method": "GET", "path": f"/api/v1/statuses/{s['id']}"}, "response": {"status": 200, "json": s}}
        for s in statuses
    ]
    return {"interactions": interactions}


def brands_yaml(base_url: str, webhook_url: str, *, extra_sources: str = "", min_priority: str = "P4") -> str:
    """A config with one brand watched on the local Mastodon and a signed webhook."""
    return f"""
flag_rules:
  # Priority bands exactly one point wide: a step up in spread (+1.1 points) must cross one.
  p1_score: 5.0
  p2_score: 4.0
  p3_score: 3.0
notifications:
  - {{kind: webhook, url: "{webhook_url}/hook", secret_env: MOMENTS_WEBHOOK_SECRET, min_priority: {min_priority}}}
brands:
  - name: Northwind Air
    names: ["Northwind Air", Northwind]
    handles: ["@northwindair"]
    keywords: ["#{TAG}", {TAG}]
    sources:
      - {{source: mastodon, query: {TAG}, base_url: "{base_url}"}}
{extra_sources}"""
