"""What a crawl remembers between runs, and the clock it runs on.

One JSON file per source and query under ``$MOMENTS_HOME/crawl-state/``
(``MOMENTS_HOME`` defaults to ``./var``) holds:

* ``cursor``: the newest ``created_at`` seen, so the next run asks only for
  newer posts (minus the re-poll window, see below);
* ``recent``: posts created within the last :data:`REPOLL_HOURS` and their
  engagement snapshots, so a re-run re-polls them and appends a snapshot; for
  posts re-polled by id, also the accounts seen resharing them (``reshares``,
  each with the poll that first saw it, see :func:`merge_reshares`) and the
  reshare count their listing was last read at (``reshares_count``);
* ``runs``: the last few runs' health figures, to spot output falling to zero.

A crawl by id (``moments crawl SOURCE --ids FILE``) shares the file of its
``--query`` (or uses :data:`IDS_STATE_KEY` without one) but only adds
engagement snapshots to ``recent``: it never moves the cursor and adds no
``runs`` entry, and it writes its snapshots into the file as it is on disk at
the end of the run (:meth:`CrawlState.save_polled`), so a search crawl saved
meanwhile keeps its cursor.

The clock: ``crawled_at`` and snapshot times come from ``--as-of`` or
``MOMENTS_AS_OF`` when given (a recorded corpus replays "as of" its recording
time and gives the same results every time), else from the wall clock.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crawlers.text import parse_timestamp
from moments import settings

REPOLL_HOURS = 72
MAX_RUNS_KEPT = 20
#: Resharers kept per post (the first seen): the state stays small on a post that goes viral.
MAX_RESHARES_KEPT = 500
#: The state key of a crawl by id without ``--query`` (its own file, ``by_id.json``).
IDS_STATE_KEY = "(by id)"


def default_state_dir() -> Path:
    """Where crawl state lives: ``$MOMENTS_HOME/crawl-state``."""
    return settings.crawl_state_dir()


def resolve_as_of(as_of: str | datetime | None = None) -> datetime | None:
    """The replay time: the argument, else ``MOMENTS_AS_OF``, else ``None`` (wall clock).

    Raises:
        ValueError: The timestamp cannot be parsed.
    """
    value: Any = as_of if as_of is not None else settings.env("MOMENTS_AS_OF")
    if value is None:
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    return parsed


class Clock:
    """``now()`` is the replay time when one is set, else the wall clock (always UTC)."""

    def __init__(self, as_of: datetime | None = None) -> None:
        self.as_of = as_of

    def now(self) -> datetime:
        """The current crawl time."""
        return self.as_of if self.as_of is not None else datetime.now(UTC)


def add_snapshot(history: list[Any], snapshot: dict[str, Any]) -> list[Any]:
    """``history`` with ``snapshot`` added, one per poll time (``at``), oldest first.

    A snapshot whose ``at`` is already there is not added again, so replaying a
    poll (the same ``--as-of``) leaves the history as it was.
    """
    at = snapshot.get("at")
    if any(s.get("at") == at for s in history):
        return history
    out = [*history, snapshot]
    if len(out) > 1 and _at_key(out[-2]) > _at_key(snapshot):
        out.sort(key=_at_key)  # a replay of an older poll time: keep the order by time
    return out


def _at_key(snapshot: dict[str, Any]) -> datetime:
    return parse_timestamp(snapshot.get("at")) or datetime.min.replace(tzinfo=UTC)


def merge_reshares(known: list[Any] | None, seen: list[Any] | None) -> list[dict[str, Any]]:
    """The resharers of ``known`` (earlier polls) and ``seen`` (this one), each account once.

    Entries are ``{"handle", "followers", "at"}`` (``at`` ISO 8601, the poll that
    saw the account). Sources do not say when an account reshared, so the
    earliest ``at`` of a handle is kept, with the follower count seen then (a
    later count only fills in an unknown one). An account that undid its
    reshare stays: it was exposed to its followers. Oldest first (ties in the
    order the source listed them), at most :data:`MAX_RESHARES_KEPT`: the first
    seen are kept, so once a post is past the cap its list stops growing.
    """
    merged: dict[str, dict[str, Any]] = {}
    for entry in [*(known or []), *(seen or [])]:
        handle = entry.get("handle") if isinstance(entry, dict) else None
        at = parse_timestamp(entry.get("at")) if isinstance(entry, dict) else None
        if not isinstance(handle, str) or not handle or at is None:
            continue  # not one of ours (a hand-edited or damaged state file): never fail the post
        followers = entry.get("followers")
        followers = followers if type(followers) is int and followers >= 0 else None
        mine = {"handle": handle, "followers": followers, "at": at.isoformat()}
        old = merged.get(handle)
        if old is None:
            merged[handle] = mine
        elif _at_key(mine) < _at_key(old):
            merged[handle] = mine if mine["followers"] is not None else {**mine, "followers": old["followers"]}
        elif old["followers"] is None and mine["followers"] is not None:
            old["followers"] = mine["followers"]
    out = sorted(merged.values(), key=_at_key)  # stable: ties keep the listing order
    return out[:MAX_RESHARES_KEPT]


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80]
    return slug or "_"


@dataclass
class CrawlState:
    """The persisted state of one source + query."""

    source: str
    query: str
    cursor: str | None = None
    recent: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    last_success: str | None = None
    path: Path | None = None
    # (cursor, cursor parsed): advance() reads the cursor once per post.
    _parsed_cursor: tuple[str | None, datetime | None] = field(
        default=(None, None), init=False, repr=False, compare=False
    )

    @classmethod
    def load(cls, state_dir: Path, source: str, query: str) -> CrawlState:
        """Read the state file; a missing or corrupt one starts afresh."""
        path = state_dir / _slug(source) / f"{_slug(query)}.json"
        state = cls(source=source, query=query, path=path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, OSError):
            return state
        if isinstance(data, dict) and data.get("query") == query:
            state.cursor = data.get("cursor")
            state.recent = data.get("recent") or {}
            state.runs = data.get("runs") or []
            state.last_success = data.get("last_success")
        return state

    @property
    def cursor_time(self) -> datetime | None:
        """The cursor as a datetime (``None`` on a first run)."""
        return parse_timestamp(self.cursor)

    def advance(self, created_at: datetime | None) -> None:
        """Move the cursor forward to a newer ``created_at``."""
        if created_at is None:
            return
        # Called once per post: parse the cursor string only when it changed.
        cursor = self.cursor
        if cursor != self._parsed_cursor[0]:
            self._parsed_cursor = (cursor, parse_timestamp(cursor))
        current = self._parsed_cursor[1]
        if current is None or created_at > current:
            self.cursor = created_at.isoformat()
            self._parsed_cursor = (self.cursor, created_at)

    def prune(self, now: datetime) -> None:
        """Forget posts that have left the re-poll window."""
        horizon = now - timedelta(hours=REPOLL_HOURS)
        for key in [k for k, v in self.recent.items() if (parse_timestamp(v.get("created_at")) or now) < horizon]:
            del self.recent[key]

    def save_polled(self, post_ids: set[str], now: datetime) -> None:
        """Write the snapshots of these posts into the state file as it is now on disk.

        For a crawl by id: it loaded the file at its start, but a search crawl
        of the same source and query may have saved since, moving the cursor
        and adding snapshots. Only ``recent`` entries of ``post_ids`` (their
        snapshots merged by ``at``, their resharers by handle, see
        :func:`merge_reshares`) and ``last_success`` are written; the
        cursor and ``runs`` on disk stay as they are.
        """
        assert self.path is not None
        disk = CrawlState.load(self.path.parent.parent, self.source, self.query)
        for key in post_ids:
            mine = self.recent.get(key)
            if mine is None:
                continue
            theirs = disk.recent.get(key)
            if theirs:
                history = list(theirs.get("snapshots") or [])
                for snapshot in mine.get("snapshots") or []:
                    history = add_snapshot(history, snapshot)
                mine = {**theirs, **mine, "snapshots": history}
                if theirs.get("reshares") or mine.get("reshares"):
                    mine["reshares"] = merge_reshares(theirs.get("reshares"), mine.get("reshares"))
            disk.recent[key] = mine
        if self.last_success and (disk.last_success is None or self.last_success > disk.last_success):
            disk.last_success = self.last_success
        disk.prune(now)
        disk.save()
        self.cursor, self.recent, self.runs = disk.cursor, disk.recent, disk.runs
        self.last_success = disk.last_success

    def save(self) -> None:
        """Write atomically (a crash mid-write must not lose the cursor)."""
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.runs = self.runs[-MAX_RUNS_KEPT:]
        # Not dataclasses.asdict: it deep-copies every snapshot of every recent post.
        data = {
            "source": self.source,
            "query": self.query,
            "cursor": self.cursor,
            "recent": self.recent,
            "runs": self.runs,
            "last_success": self.last_success,
        }
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp") as handle:
            # Compact: the re-poll window can hold tens of thousands of posts.
            handle.write(json.dumps(data, separators=(",", ":")))  # dumps: the C encoder; dump is not
        os.replace(handle.name, self.path)
