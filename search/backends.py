"""How a store is chosen: :func:`open_store` picks a backend from a URL.

Kept apart from :mod:`search.store` so the interface module never imports its own
backends, and each backend is imported only when it is used (the Elasticsearch
client is not loaded for the embedded store).
"""

from __future__ import annotations

from moments import settings
from search.store import Store


def open_store(url: str | None = None, *, migrate: bool = True) -> Store:
    """Open the store named by ``url``, ``$MOMENTS_STORE``, or the embedded default.

    Opening a store written by an older release migrates it first (see
    :meth:`Store.migrate`), so every caller sees the current schema.

    Args:
        url: ``http(s)://...`` for Elasticsearch; ``sqlite:///path/to.db`` or a
            plain path for SQLite; ``None`` for ``$MOMENTS_STORE`` or the default
            ``$MOMENTS_HOME/moments.db``.
        migrate: Migrate a store written by an older release as it is opened.

    Raises:
        StoreError: The store cannot be reached (one line, naming the URL).
    """
    chosen = settings.store_url(url)
    if settings.is_elasticsearch(chosen):
        from search.elastic import ElasticStore

        return ElasticStore(chosen, migrate=migrate)
    from search.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path(chosen), migrate=migrate)
