"""Search: where classified posts are stored, searched and counted.

Public surface: :func:`open_store` and the :class:`Store` interface, plus
:func:`search.mapping.es_mapping` (the Elasticsearch mapping derived from the schema).
"""

from search.store import IndexResult, Store, StoreError, TouchpointCount, default_home, open_store

__all__ = ["IndexResult", "Store", "StoreError", "TouchpointCount", "default_home", "open_store"]
