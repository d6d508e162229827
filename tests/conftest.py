"""Fixtures shared by every test package (crawlers, models, search, flows).

* ``es_url``: the real Elasticsearch that ``make test`` provisions; tests that
  need it skip with a how-to when it is absent (and fail under ``CI=true``).
* ``tmp_home``: a private ``$MOMENTS_HOME`` so no test touches ``./var``.
* ``make_post``: a factory of valid :class:`~crawlers.schema.Post` records.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crawlers.schema import Post, post_id

ES_HOWTO = (
    "Elasticsearch tests need MOMENTS_TEST_ES_URL: run `make test`, which starts a real Elasticsearch "
    "(needs Java 21+ in JAVA_HOME or /usr/lib/jvm, e.g. apt-get install openjdk-21-jdk-headless, and Maven: "
    "apt-get install maven), or export MOMENTS_TEST_ES_URL=http://127.0.0.1:9200 for your own server."
)

MakePost = Callable[..., Post]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def es_url() -> str:
    """The URL of the test Elasticsearch (``$MOMENTS_TEST_ES_URL``).

    Skips the test when it is unset; under ``CI=true`` a missing server is a
    failure, so a CI run can never pass by skipping every Elasticsearch test.
    """
    url = os.environ.get("MOMENTS_TEST_ES_URL", "").strip()
    if not url:
        if _in_ci():
            pytest.fail(ES_HOWTO, pytrace=False)
        pytest.skip(ES_HOWTO)
    return url.rstrip("/")


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
