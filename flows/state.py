"""What the unattended flows remember between runs, under ``$MOMENTS_HOME/watch/``.

* ``pending.json``: posts that changed (new, edited, or with new engagement) and
  have not been re-scored yet. Ids are added *before* the posts are indexed and
  removed only once their flags are evaluated, so a tick that dies, or finds the
  store down, leaves them to the next one: nothing changed is ever skipped.
* ``ticks.json``: when each brand was last polled, so each brand keeps its own
  ``watch_interval`` while one schedule (the shortest interval) drives the flow.

Both are small JSON files written atomically under a file lock (two flow runs on
one machine never interleave their read-modify-write).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from moments import settings
from moments.config import MomentsConfig

#: A pending post not found in the store for this long is given up on (it was never written).
PENDING_MAX_AGE = timedelta(days=3)
#: A brand is due when its interval has passed, less this slack (schedules drift by seconds).
DUE_SLACK = timedelta(seconds=30)


def state_dir() -> Path:
    """``$MOMENTS_HOME/watch``."""
    return settings.home() / "watch"


def baselines_path() -> Path:
    """Where the velocity baselines live (refreshed nightly, read by every tick)."""
    return state_dir() / "baselines.json"


@contextlib.contextmanager
def _locked(name: str) -> Iterator[dict[str, Any]]:
    """The JSON map in ``state_dir()/name``, locked; changes are saved atomically on exit."""
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with open(directory / f".{name}.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except ValueError:
            data = {}  # a torn file cannot happen (atomic rename); a hand-edited one is reset
        before = json.dumps(data, sort_keys=True)
        yield data
        if json.dumps(data, sort_keys=True) != before:
            partial = path.with_suffix(".partial")
            partial.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
            os.replace(partial, path)


def pending_add(post_ids: Iterable[str], now: datetime) -> None:
    """Remember posts that must be re-scored (the first time each was seen is kept)."""
    ids = list(post_ids)
    if not ids:
        return
    with _locked("pending.json") as pending:
        for post_id in ids:
            pending.setdefault(post_id, now.isoformat())


def pending_ids() -> list[str]:
    """Every post still waiting to be re-scored, oldest first."""
    with _locked("pending.json") as pending:
        return sorted(pending, key=lambda k: (pending[k], k))


def pending_done(post_ids: Iterable[str], missing: Iterable[str], now: datetime) -> None:
    """Forget re-scored posts, and missing ones pending for longer than :data:`PENDING_MAX_AGE`."""
    with _locked("pending.json") as pending:
        for post_id in post_ids:
            pending.pop(post_id, None)
        for post_id in missing:
            first = pending.get(post_id)
            if first is not None and now - datetime.fromisoformat(first) > PENDING_MAX_AGE:
                pending.pop(post_id)


def brand_interval(config: MomentsConfig, brand: str) -> timedelta:
    """How often a brand is polled: its ``watch_interval``, else ``schedules.watch.interval``, else 10 min."""
    chosen = config.brand(brand)
    if chosen is not None and chosen.watch_interval is not None:
        return chosen.watch_interval
    return config.schedules.watch.interval or timedelta(minutes=10)


def watch_interval(config: MomentsConfig) -> timedelta:
    """The schedule that serves every brand: the shortest of their intervals."""
    intervals = [brand_interval(config, b.name) for b in config.brands]
    return min(intervals, default=config.schedules.watch.interval or timedelta(minutes=10))


def due_brands(config: MomentsConfig, now: datetime, *, force: bool = False) -> list[str]:
    """The brands whose watch interval has passed since their last tick (all of them with ``force``)."""
    with _locked("ticks.json") as ticks:
        due = []
        for brand in config.brands:
            last = ticks.get(brand.name)
            if (
                force
                or last is None
                or now - datetime.fromisoformat(last) >= brand_interval(config, brand.name) - DUE_SLACK
            ):
                due.append(brand.name)
        return due


def mark_ticked(brands: Iterable[str], now: datetime) -> None:
    """Record that ``brands`` were polled at ``now``."""
    with _locked("ticks.json") as ticks:
        for brand in brands:
            ticks[brand] = now.isoformat()
