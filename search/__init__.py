"""Search: where classified posts and care-team flags are stored, searched and counted.

Public surface:

* :func:`open_store` -> :class:`Store`: the embedded SQLite store or Elasticsearch, by URL.
* :class:`Store`: posts (idempotent upserts, search, scan, scorecard) and flags
  (compare-and-set changes with an append-only event log).
* :class:`StoreError` (exit 1) for a store that cannot be reached or refuses a write.
* :func:`search.mapping.es_mapping`: the Elasticsearch mapping derived from the schema.
"""

from search.backends import open_store
from search.store import (
    ACTIVE_STATUSES,
    FlagChange,
    IndexResult,
    MigrationReport,
    Store,
    StoreError,
    TouchpointCount,
)

__all__ = [
    "ACTIVE_STATUSES",
    "FlagChange",
    "IndexResult",
    "MigrationReport",
    "Store",
    "StoreError",
    "TouchpointCount",
    "open_store",
]
