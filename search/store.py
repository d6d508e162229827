"""The store interface every backend implements, and how one is chosen.

Two backends sit behind :class:`Store`: the embedded default (SQLite + FTS5
under ``$MOMENTS_HOME``) and Elasticsearch (``--store http://host:9200`` or
``$MOMENTS_STORE``). One contract test suite (``tests/search/test_store_contract.py``)
runs against both.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Self

from crawlers.schema import Flag, Post


class StoreError(RuntimeError):
    """A store could not be reached or refused an operation; the message is one readable line."""


@dataclass(frozen=True)
class IndexResult:
    """The outcome of :meth:`Store.upsert`."""

    written: int
    spooled: int = 0


@dataclass(frozen=True)
class TouchpointCount:
    """One row of the per-touchpoint scorecard."""

    touchpoint: str
    magic: int
    misery: int
    neutral: int

    @property
    def total(self) -> int:
        return self.magic + self.misery + self.neutral


def summarise_touchpoints(counts: dict[str, dict[str, int]]) -> list[TouchpointCount]:
    """Turn ``{touchpoint: {moment: n}}`` into scorecard rows, busiest first, then by name.

    Shared by the backends so they order the scorecard identically.
    """
    rows = [
        TouchpointCount(touchpoint=t, magic=m.get("magic", 0), misery=m.get("misery", 0), neutral=m.get("neutral", 0))
        for t, m in counts.items()
    ]
    return sorted(rows, key=lambda row: (-row.total, row.touchpoint))


class Store(abc.ABC):
    """Where posts live once classified. Writes are idempotent by ``Post.id``."""

    #: Human-readable location (a path or URL), used in messages.
    location: str

    @abc.abstractmethod
    def upsert(self, posts: Iterable[Post]) -> IndexResult:
        """Insert or replace posts by id. Re-indexing the same posts never duplicates them.

        A stored ``flag`` survives when the incoming post has none, so a re-crawl
        does not reopen or erase a care agent's work.
        """

    @abc.abstractmethod
    def get(self, post_id: str) -> Post | None:
        """One post by id, or ``None``."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many posts are stored."""

    @abc.abstractmethod
    def search(self, query: str, *, brand: str | None = None, limit: int = 20) -> list[Post]:
        """Full-text search over text, title and author name, best match first."""

    @abc.abstractmethod
    def scan(self, *, since: datetime | None = None, brand: str | None = None) -> Iterator[Post]:
        """Every stored post (optionally created at/after ``since``), for flagging and exports."""

    @abc.abstractmethod
    def set_flag(self, post_id: str, flag: Flag | None) -> None:
        """Set or clear the flag on a stored post. Raises ``KeyError`` if the post is unknown."""

    @abc.abstractmethod
    def open_flags(self, *, brand: str | None = None, limit: int = 100) -> list[Post]:
        """Posts whose flag is open, highest priority (then score) first."""

    @abc.abstractmethod
    def touchpoint_summary(self, *, brand: str | None = None) -> list[TouchpointCount]:
        """Magic / misery / neutral counts per touchpoint, over classified posts."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_home() -> Path:
    """The data directory: ``$MOMENTS_HOME`` or ``./var``."""
    return Path(os.environ.get("MOMENTS_HOME", "var"))


def open_store(url: str | None = None) -> Store:
    """Open the store named by ``url``, ``$MOMENTS_STORE``, or the embedded default.

    Args:
        url: ``http(s)://...`` for Elasticsearch; ``sqlite:///path/to.db`` or a
            plain path for SQLite; ``None`` for ``$MOMENTS_STORE`` or the default.

    Raises:
        StoreError: The store cannot be reached (one line, naming the URL).
    """
    url = url or os.environ.get("MOMENTS_STORE") or None
    if url and url.startswith(("http://", "https://")):
        from search.elastic import ElasticStore

        return ElasticStore(url)
    from search.sqlite import SqliteStore

    if url:
        # sqlite:///abs/path.db -> /abs/path.db; sqlite://rel.db -> rel.db; anything else is a path.
        return SqliteStore(Path(url.removeprefix("sqlite://")))
    return SqliteStore(default_home() / "moments.db")
