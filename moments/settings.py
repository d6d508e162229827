"""Where Moments keeps its data and which store it talks to, decided in one place.

Every command and flow reads these through the functions below, never from
``os.environ`` directly, so an empty variable means the same thing everywhere
(an empty ``MOMENTS_HOME`` is unset, not the current directory).

Environment variables:

=======================  =====================================================
``MOMENTS_HOME``         data directory (default ``./var``): the embedded store,
                         crawl cursors, run files, spool, Prefect's database
``MOMENTS_STORE``        the store: ``http(s)://host:9200`` for Elasticsearch, or
                         a SQLite path / ``sqlite:///path`` (default: the
                         embedded ``$MOMENTS_HOME/moments.db``)
``MOMENTS_ES_PREFIX``    prefix of Elasticsearch index and alias names
                         (default ``moments``)
``MOMENTS_CONFIG``       brands.yaml used when ``--config`` is not given
                         (default ``./brands.yaml``)
``MOMENTS_AS_OF``        replay clock for recorded corpora (ISO 8601)
``MOMENTS_CONTACT_URL``  contact URL for the crawler's User-Agent
=======================  =====================================================
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path("var")
DEFAULT_ES_PREFIX = "moments"
DEFAULT_CONFIG = Path("brands.yaml")


def env(name: str) -> str | None:
    """An environment variable, with empty or blank values treated as unset."""
    value = os.environ.get(name, "").strip()
    return value or None


def home() -> Path:
    """The data directory: ``$MOMENTS_HOME``, or ``./var``."""
    value = env("MOMENTS_HOME")
    return Path(value) if value else DEFAULT_HOME


def store_url(explicit: str | None = None) -> str:
    """The store to open: ``explicit`` (``--store``), else ``$MOMENTS_STORE``, else the embedded default.

    Returns:
        An ``http(s)://`` URL for Elasticsearch, or a filesystem path for SQLite.
    """
    chosen = (explicit or "").strip() or env("MOMENTS_STORE")
    if chosen:
        return chosen
    return str(home() / "moments.db")


def is_elasticsearch(url: str) -> bool:
    """Whether a store URL names Elasticsearch (anything else is an SQLite path)."""
    return url.startswith(("http://", "https://"))


def sqlite_path(url: str) -> Path:
    """The database file of an SQLite store URL (``sqlite:///abs.db``, ``sqlite://rel.db`` or a path)."""
    return Path(url.removeprefix("sqlite://"))


def es_prefix(explicit: str | None = None) -> str:
    """The prefix of Elasticsearch index and alias names."""
    return (explicit or "").strip() or env("MOMENTS_ES_PREFIX") or DEFAULT_ES_PREFIX


def config_path(explicit: str | Path | None = None) -> Path:
    """The brands.yaml to read: ``--config``, else ``$MOMENTS_CONFIG``, else ``./brands.yaml``."""
    if explicit:
        return Path(explicit)
    value = env("MOMENTS_CONFIG")
    return Path(value) if value else DEFAULT_CONFIG


def spool_dir() -> Path:
    """Where writes wait while a store is unavailable."""
    return home() / "spool"


def outbox_path() -> Path:
    """The notification outbox: flag notices wait here until every channel has them."""
    return home() / "outbox.sqlite"


def runs_dir() -> Path:
    """Where pipeline runs keep their intermediate files."""
    return home() / "runs"


def crawl_state_dir() -> Path:
    """Crawl cursors and source health."""
    return home() / "crawl-state"


def prefect_home() -> Path:
    """Prefect's local database and settings for runs without a server."""
    return home() / "prefect"
