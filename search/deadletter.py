"""Dead letters: posts a store refused, kept with the reason so nothing vanishes silently.

A post Elasticsearch rejects (a mapping error, HTTP 400 for that one document) cannot
be fixed by retrying, and must not block the posts around it. :meth:`Store.upsert`
appends it to a dead-letter file instead, one JSON line per post::

    {"post": {...}, "reason": "document_parsing_exception: ...", "status": 400,
     "at": "2026-11-20T18:00:00.123456+00:00", "index": "moments-posts"}

The files live in ``$MOMENTS_HOME/dead-letters/``, beside the spool directory: one
per store (``elasticsearch-<alias>.jsonl``, ``sqlite-<file stem>.jsonl``). Once the
cause is fixed (the mapping migrated, the schema corrected), ``moments search
replay-dead-letters`` writes them again: those that go through leave the file, those
still refused stay, with the new reason and time.

Appends and rewrites hold an advisory lock (``fcntl.flock`` on ``<file>.lock``), so
several indexers and a replay may share one file; a replay also holds
``<file>.replay.lock`` for its whole run, so two replays never take the same letters.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from moments import settings
from moments.records import Post

if TYPE_CHECKING:
    from search.store import Store

log = logging.getLogger("moments.search.deadletter")

#: The directory's name, under ``$MOMENTS_HOME`` beside ``spool``.
DEAD_LETTER_DIR = "dead-letters"


def dead_letter_dir(spool_dir: Path | None = None) -> Path:
    """Where dead-letter files go: ``dead-letters`` next to ``spool_dir`` (default ``$MOMENTS_HOME/spool``)."""
    return (spool_dir if spool_dir is not None else settings.spool_dir()).parent / DEAD_LETTER_DIR


@dataclass(frozen=True)
class DeadLetter:
    """One refused post, why, when, and where it was going."""

    post: Post
    reason: str
    at: datetime
    index: str
    status: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "post": self.post.model_dump(mode="json"),
                "reason": self.reason,
                "status": self.status,
                "at": self.at.isoformat(),
                "index": self.index,
            },
            ensure_ascii=False,
        )


class DeadLetterFile:
    """One store's dead-letter file (JSONL), appended to and rewritten under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"DeadLetterFile({str(self.path)!r})"

    @contextlib.contextmanager
    def _locked(self, suffix: str = ".lock") -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + suffix), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, letters: Iterable[DeadLetter]) -> int:
        """Append letters (flushed and fsynced: a refused post must outlive a crash); how many."""
        lines = [letter.to_json() + "\n" for letter in letters]
        if not lines:
            return 0
        with self._locked(), self.path.open("a", encoding="utf-8") as handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        return len(lines)

    def lines(self) -> list[str]:
        """The file's non-blank lines, as stored."""
        if not self.path.is_file():
            return []
        return [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def __len__(self) -> int:
        return len(self.lines())

    def remove_where(self, drop: Callable[[dict[str, Any]], bool]) -> int:
        """Rewrite the file without the letters ``drop`` picks (atomically, under the lock); how many went.

        Lines that are not JSON objects are kept as they are: nothing is lost by a cleanup.
        """
        return remove_lines(self.path, drop, lock=self._locked)

    @contextlib.contextmanager
    def _taken(self) -> Iterator[list[str]]:
        """Move the letters out of the file for a replay (under the replay lock), yielding their lines.

        The lines wait in ``<file>.replaying`` until the replay is over, so a replay that
        dies half-way loses nothing: the next one picks them up first.
        """
        taking = self.path.with_name(self.path.name + ".replaying")
        with self._locked(".replay.lock"):
            with self._locked():
                if self.path.is_file():
                    taken = self.path.read_text(encoding="utf-8")
                    with taking.open("a", encoding="utf-8") as handle:
                        handle.write(taken if taken.endswith("\n") or not taken else taken + "\n")
                    self.path.unlink()
            lines = []
            if taking.is_file():
                lines = [line for line in taking.read_text(encoding="utf-8").splitlines() if line.strip()]
            yield lines
            taking.unlink(missing_ok=True)

    def _put_back(self, lines: list[str]) -> None:
        if not lines:
            return
        with self._locked(), self.path.open("a", encoding="utf-8") as handle:
            handle.writelines(line + "\n" for line in lines)


def remove_lines(
    path: Path,
    drop: Callable[[dict[str, Any]], bool],
    *,
    lock: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
) -> int:
    """Rewrite a JSONL file without the objects ``drop`` picks; how many went (the file is kept, maybe empty).

    Written to a temporary file and renamed over the original, so a crash leaves one
    or the other, never half of each. Lines that are not JSON objects are kept.
    """
    guard = lock() if lock is not None else contextlib.nullcontext()
    with guard:
        if not path.is_file():
            return 0
        kept: list[str] = []
        removed = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                kept.append(line)
                continue
            if isinstance(value, dict) and drop(value):
                removed += 1
            else:
                kept.append(line)
        if removed:
            fresh = path.with_name(path.name + ".rewrite")
            with fresh.open("w", encoding="utf-8") as handle:
                handle.writelines(line + "\n" for line in kept)
                handle.flush()
                os.fsync(handle.fileno())
            fresh.replace(path)
        return removed


@dataclass(frozen=True)
class ReplayReport:
    """What :func:`replay_dead_letters` did."""

    replayed: int = 0
    still_rejected: int = 0
    spooled: int = 0
    unreadable: int = 0
    path: Path | None = None

    def __str__(self) -> str:
        text = f"replayed {self.replayed} dead-lettered posts, {self.still_rejected} still rejected"
        if self.spooled:
            text += f", {self.spooled} spooled (store unavailable)"
        if self.unreadable:
            text += f", {self.unreadable} lines unreadable (kept)"
        return text + (f" ({self.path})" if self.path else "")


def replay_dead_letters(store: Store) -> ReplayReport:
    """Write a store's dead-lettered posts again.

    The posts go through :meth:`Store.upsert`, so those the store still refuses land
    in the dead-letter file again with the new reason and time, and those it takes
    leave it. Lines that are not a post are put back unchanged (and counted).
    """
    letters = store.dead_letters
    with letters._taken() as lines:
        posts: list[Post] = []
        unreadable: list[str] = []
        for line in lines:
            try:
                record = json.loads(line)
                posts.append(Post.model_validate(record["post"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValidationError):
                unreadable.append(line)
        result = store.upsert(posts) if posts else None
        letters._put_back(unreadable)
    if result is None:
        return ReplayReport(unreadable=len(unreadable), path=letters.path)
    if result.spooled:
        # Unavailable rather than refused: they wait in the spool, and are written by the next upsert.
        log.warning("%d dead-lettered posts were spooled: the store is unavailable", result.spooled)
    return ReplayReport(
        replayed=result.written,
        still_rejected=result.rejected,
        spooled=result.spooled,
        unreadable=len(unreadable),
        path=letters.path,
    )


def run_replay(args: argparse.Namespace) -> int:
    """``moments search replay-dead-letters``: write dead-lettered posts again and print the counts."""
    from search.backends import open_store

    with open_store(args.store) as store:
        report = replay_dead_letters(store)
    print(f"{report}")
    return 0


REPLAY_DESCRIPTION = """\
Write again the posts the store refused (kept in $MOMENTS_HOME/dead-letters/, one
JSON line per post with the reason). Fix the cause first, for example with
`moments search migrate` after a mapping change; then replay. Posts that go
through leave the file; posts still refused stay in it with the new reason.

examples:
  moments search replay-dead-letters
  moments search replay-dead-letters --store http://127.0.0.1:9200
"""
