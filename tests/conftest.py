"""Fixtures shared by every test package (crawlers, models, search, flows).

* ``es_url``: the real Elasticsearch that ``make test`` provisions, with a
  private index prefix per test (``es_prefix``); tests that need it skip with
  a how-to when it is absent (and fail under ``CI=true``).
* ``tmp_home``: a private ``$MOMENTS_HOME`` so no test touches ``./var``.
* ``make_post``: a factory of valid :class:`~moments.records.Post` records.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from moments.records import Post, post_id

ES_HOWTO = (
    "Elasticsearch tests need MOMENTS_TEST_ES_URL: run `make test`, which starts a real Elasticsearch "
    "(needs Java 21+ in JAVA_HOME or /usr/lib/jvm, e.g. apt-get install openjdk-21-jdk-headless, and Maven: "
    "apt-get install maven), or export MOMENTS_TEST_ES_URL=http://127.0.0.1:9200 for your own server."
)

MakePost = Callable[..., Post]

# Flow tasks retry with 10 s, 20 s, 40 s backoff in production; tests that make a source fail
# on purpose would spend that waiting. Read once when flows.tasks is imported, so set it first.
os.environ.setdefault("MOMENTS_RETRY_BACKOFF_SECONDS", "0.2")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def es_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The URL of the test Elasticsearch (``$MOMENTS_TEST_ES_URL``), with a private index per test.

    ``$MOMENTS_ES_PREFIX`` is set to a unique prefix for the test, so every
    store it opens (``open_store``, the CLI, flows) writes to its own
    indices (posts, flags, app, snapshots) and templates, all deleted afterwards:
    tests never see each other's posts or flags. Skips when the URL is unset; under ``CI=true`` a missing
    server is a failure, so CI can never pass by skipping these tests.
    """
    url = os.environ.get("MOMENTS_TEST_ES_URL", "").strip().rstrip("/")
    if not url:
        if _in_ci():
            pytest.fail(ES_HOWTO, pytrace=False)
        pytest.skip(ES_HOWTO)
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("MOMENTS_ES_PREFIX", prefix)
    yield url
    from search.migration import drop_prefix

    # Every index and template of the prefix, by name: posts and flags of every version,
    # the app index, monthly snapshot indices, and the templates.
    with contextlib.suppress(Exception):
        drop_prefix(url, prefix)


@pytest.fixture
def es_prefix(es_url: str) -> str:
    """The unique index prefix of this test (``ElasticStore(es_url, index_prefix=es_prefix)``)."""
    return os.environ["MOMENTS_ES_PREFIX"]


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``$MOMENTS_HOME`` (and no ``$MOMENTS_STORE``) for one test."""
    home = tmp_path / "moments-home"
    home.mkdir()
    monkeypatch.setenv("MOMENTS_HOME", str(home))
    monkeypatch.delenv("MOMENTS_STORE", raising=False)
    return home


@pytest.fixture
def make_post() -> MakePost:
    """A factory of valid posts: ``make_post(text="...", brand="acme", native_id="7")``.

    Every call gets a new ``native_id`` (and so a new ``id``) unless one is
    given; ``id`` is always derived from ``source`` and ``native_id``. Nested
    parts (``author``, ``classification``, ``flag`` ...) may be dicts or models.
    """
    counter = itertools.count(1)
    base_time = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def factory(**overrides: Any) -> Post:
        n = next(counter)
        fields: dict[str, Any] = {
            "source": "test",
            "native_id": f"p{n}",
            "url": f"https://example.test/posts/{n}",
            "brand": ["northwind"],
            "author": {"handle": f"user{n}", "display_name": f"User {n}", "followers": 10 * n},
            "text": f"post number {n}",
            "created_at": base_time + timedelta(minutes=n),
            "crawled_at": base_time + timedelta(minutes=n, seconds=30),
        }
        fields.update(overrides)
        fields["id"] = post_id(fields["source"], fields["native_id"])
        return Post.model_validate(fields)

    return factory
