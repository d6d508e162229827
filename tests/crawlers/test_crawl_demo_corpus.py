"""The offline demo's recorded corpus crawls with the real spiders, reproducibly."""

from __future__ import annotations

from pathlib import Path

import pytest
from crawl_helpers import REPO, Crawl

DEMO = REPO / "crawlers" / "recorded" / "demo"
BRANDS = REPO / "flows" / "demo" / "brands.yaml"
AS_OF = "2026-11-20T18:00:00Z"

pytestmark = pytest.mark.skipif(not (DEMO.is_dir() and BRANDS.is_file()), reason="demo corpus not present")


@pytest.mark.parametrize(
    ("source", "query", "engagement"),
    [
        ("mastodon", "northwindair", "likes"),
        ("reddit", "northwind air", "score"),
        ("appstore", "1234567890", "score"),
    ],
)
def test_demo_source_crawls_and_replays_identically(
    crawl: Crawl, tmp_path: Path, source: str, query: str, engagement: str
) -> None:
    first = crawl(DEMO, source, query, "--config", str(BRANDS), "--as-of", AS_OF)
    assert first.returncode == 0, first.stderr
    assert len(first.posts) >= 10
    assert all(p.brand == ["Northwind Air"] for p in first.posts)
    assert any(getattr(p.engagement, engagement) for p in first.posts)
    assert all(p.crawled_at.isoformat() == "2026-11-20T18:00:00+00:00" for p in first.posts)
    # Replaying the same corpus as of the same time gives the same records.
    again = crawl(DEMO, source, query, "--config", str(BRANDS), "--as-of", AS_OF)
    assert [p.to_json() for p in again.posts] == [p.to_json() for p in first.posts]
