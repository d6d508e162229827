"""Crawlers: public posts and reviews about a brand, as :class:`Post` records.

Public surface:

* :mod:`crawlers.schema`: the one record schema (``Post`` and its parts).
* :func:`read_posts` / :func:`write_posts`: JSONL in and out, with line-numbered errors.
* :func:`crawl`: run one spider (imported lazily so later stages never pay for Scrapy).
"""

from __future__ import annotations

from typing import Any

from crawlers.jsonl import ReadReport, read_posts, read_posts_file, write_posts
from crawlers.schema import (
    Author,
    Classification,
    Engagement,
    EngagementSnapshot,
    Flag,
    Post,
    post_id,
    utc_now,
)

__all__ = [
    "Author",
    "Classification",
    "Engagement",
    "EngagementSnapshot",
    "Flag",
    "Post",
    "ReadReport",
    "crawl",
    "post_id",
    "read_posts",
    "read_posts_file",
    "utc_now",
    "write_posts",
]


def crawl(*args: Any, **kwargs: Any) -> Any:
    """Run one spider; see :func:`crawlers.runner.crawl`."""
    from crawlers.runner import crawl as _crawl

    return _crawl(*args, **kwargs)
