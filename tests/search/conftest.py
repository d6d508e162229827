"""The ``store`` fixture: each contract test runs on SQLite and on the real Elasticsearch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from search.store import Store


@pytest.fixture(
    params=["sqlite", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)],
)
def store(request: pytest.FixtureRequest, tmp_home: Path) -> Iterator[Store]:
    """An empty store of each backend; Elasticsearch gets a unique index prefix per test."""
    if request.param == "sqlite":
        from search.sqlite import SqliteStore

        with SqliteStore(tmp_home / "nested" / "dir" / "moments.db") as sqlite_store:
            yield sqlite_store
        return
    from search.elastic import ElasticStore

    es_url = request.getfixturevalue("es_url")  # also gives this test its own index prefix
    # refresh=True keeps the suite fast; the CLI tests cover the default "wait_for".
    with ElasticStore(es_url, index_prefix=request.getfixturevalue("es_prefix"), refresh=True, backoff=0.05) as es:
        yield es
