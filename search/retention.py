"""Retention: ``moments search purge [--older-than 365d] [--dry-run]`` removes what is past its keep-by date.

Three periods, from ``retention`` in brands.yaml (:class:`moments.config.Retention`;
an unset period means keep forever), each acted on independently:

* ``posts``: a post created before ``now - period`` (crawled before it, when the
  source gave no creation time) is deleted. ``--older-than`` overrides this one.
* ``snapshots``: engagement snapshots (the ``snapshots`` table, the monthly
  ``<prefix>-snapshots-YYYY.MM`` indices) observed before ``now - period``. Unset, they
  follow ``posts`` (as before the period existed). A post's own ``engagement_history``
  is part of the post and goes with it, not with this period.
* ``flags``: *closed* flags (resolved or dismissed) closed before ``now - period``
  (``resolved_at``; the last update when a closed flag has none) are deleted with their
  event logs. A flag still being worked is never purged, however old. Cutting the
  append-only log is audited like an erasure: an app setting keyed
  ``audit:retention:<time>:<random>`` with the counts and cutoffs, no personal data.

On Elasticsearch this is a scheduled delete (scan plus bulk delete; whole monthly
snapshot indices are dropped), not ILM: the integ-test distribution the tests run on has
neither ILM nor ``_delete_by_query``. On the embedded store it is a ``DELETE``, 500 rows
per transaction. The nightly flow calls :func:`purge_all` with the loaded config.
"""

from __future__ import annotations

import argparse
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from moments import settings
from moments.accounts import AppSetting
from moments.config import Retention, load_config, parse_duration
from moments.errors import UsageError
from moments.records import utc_now
from search.store import Store

log = logging.getLogger("moments.search.retention")

#: Prefix of the audit settings written when a purge removed something.
AUDIT_PREFIX = "audit:retention:"
#: Who the audit settings name: the retention rule, never a person.
AUDIT_ACTOR = "retention"


@dataclass(frozen=True)
class PurgeReport:
    """What a purge removed (or, dry, would remove), per kind; a cutoff of ``None`` means that kind is kept forever."""

    posts: int
    snapshots: int
    flags: int
    posts_cutoff: datetime | None
    snapshots_cutoff: datetime | None
    flags_cutoff: datetime | None
    dry_run: bool = False
    #: The key of the audit setting written (``None``: dry run, or nothing removed).
    audit_key: str | None = None

    def counts(self) -> dict[str, int]:
        return {"posts": self.posts, "snapshots": self.snapshots, "flags": self.flags}

    def __str__(self) -> str:
        verb = "would purge" if self.dry_run else "purged"
        kinds = (
            (self.posts, self.posts_cutoff, "posts", "created"),
            (self.snapshots, self.snapshots_cutoff, "snapshots", "observed"),
            (self.flags, self.flags_cutoff, "closed flags", "closed"),
        )
        done = [f"{n} {name} {how} before {_iso(cut)}" for n, cut, name, how in kinds if cut is not None]
        kept = [name for _, cut, name, _ in kinds if cut is None]
        text = f"{verb} {', '.join(done) or 'nothing'}"
        return f"{text}; kept forever: {', '.join(kept)}" if kept else text


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _cutoff(now: datetime, period: timedelta | None) -> datetime | None:
    if period is None:
        return None
    if period <= timedelta(0):
        raise UsageError(f"a retention period must be positive, not {period}")
    return now - period


def purge_all(store: Store, retention: Retention, now: datetime | None = None, *, dry_run: bool = False) -> PurgeReport:
    """Remove (or count, with ``dry_run``) posts, snapshots and closed flags past their periods.

    Args:
        store: The store.
        retention: The periods (``retention`` of brands.yaml); unset ``snapshots`` follows ``posts``.
        now: The clock the cutoffs are taken from (default: now, UTC).
        dry_run: Count only; nothing is deleted and no audit setting is written.

    Returns:
        The counts and cutoffs; ``audit_key`` names the audit setting when something went.

    Raises:
        UsageError: A period is not positive.
    """
    now = now or utc_now()
    posts_cutoff = _cutoff(now, retention.posts)
    snapshots_cutoff = _cutoff(now, retention.snapshots or retention.posts)
    flags_cutoff = _cutoff(now, retention.flags)
    report = PurgeReport(
        posts=store.purge(posts_cutoff, dry_run=dry_run) if posts_cutoff else 0,
        snapshots=store.purge_snapshots(snapshots_cutoff, dry_run=dry_run) if snapshots_cutoff else 0,
        flags=store.purge_flags(flags_cutoff, dry_run=dry_run) if flags_cutoff else 0,
        posts_cutoff=posts_cutoff,
        snapshots_cutoff=snapshots_cutoff,
        flags_cutoff=flags_cutoff,
        dry_run=dry_run,
    )
    if dry_run or not any(report.counts().values()):
        return report
    return _audit(store, report)


def _audit(store: Store, report: PurgeReport) -> PurgeReport:
    """Record what went (counts and cutoffs only: nothing about whose posts or flags), as an erasure does."""
    at = utc_now()
    key = f"{AUDIT_PREFIX}{at.strftime('%Y%m%dT%H%M%S%fZ')}:{uuid.uuid4().hex[:8]}"
    cutoffs = {
        "posts": report.posts_cutoff,
        "snapshots": report.snapshots_cutoff,
        "flags": report.flags_cutoff,
    }
    value = {
        "action": "purge",
        "removed": report.counts(),
        "cutoffs": {kind: _iso(cut) if cut else None for kind, cut in cutoffs.items()},
    }
    store.put_setting(AppSetting(key=key, value=value, updated_at=at, updated_by=AUDIT_ACTOR))
    log.info("retention %s: %s", key, json.dumps(report.counts()))
    return PurgeReport(**{**report.__dict__, "audit_key": key})


def _retention(args: argparse.Namespace) -> Retention:
    """The periods: ``retention`` from the config, ``--older-than`` over ``posts``; a clear error when none is set."""
    older_than: timedelta | None = None
    if args.older_than:
        try:
            older_than = parse_duration(args.older_than)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--older-than: {exc}") from None
    explicit = getattr(args, "config", None)
    path = settings.config_path(explicit)
    if not path.is_file():
        if older_than is None:
            raise UsageError(f"say how old: --older-than 365d, or set retention.posts in {path} (not found)")
        if explicit:
            raise UsageError(f"--config: {path} not found")
        return Retention(posts=older_than)
    retention = load_config(Path(path)).retention  # a bad file is a ConfigError naming the line
    if older_than is not None:
        retention = retention.model_copy(update={"posts": older_than})
    if retention.posts is None and retention.snapshots is None and retention.flags is None:
        raise UsageError(
            f"retention.posts, retention.snapshots and retention.flags are not set in {path}:"
            " everything is kept forever; or give --older-than 365d"
        )
    return retention


def run_purge(args: argparse.Namespace) -> int:
    """``moments search purge``: purge (or count, with ``--dry-run``) what is past its retention period."""
    from search.backends import open_store

    retention = _retention(args)  # bad input is found before a store is opened
    with open_store(args.store) as store:
        report = purge_all(store, retention, dry_run=args.dry_run)
        location = store.location
    print(f"{report} from {location}")
    return 0


def configure_purge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--older-than", metavar="AGE", help="posts older than AGE, e.g. 365d (default: retention.posts in brands.yaml)"
    )
    parser.add_argument("--dry-run", action="store_true", help="count what would go, of each kind; delete nothing")
    parser.add_argument("--config", metavar="FILE", help="brands.yaml to read the retention periods from")


PURGE_DESCRIPTION = """\
Delete what is older than its retention period in brands.yaml:

  retention:
    posts: 365d       # posts created (or, undated, crawled) before now minus 365 days
    snapshots: 730d   # engagement snapshots observed before then (unset: same as posts)
    flags: 180d       # resolved or dismissed flags closed before then, with their event logs

An unset period keeps that kind forever; open, acknowledged and responded flags are never
purged. --older-than sets the posts period for this run. The nightly flow runs this; run it
by hand with --dry-run to see how many of each would go.

examples:
  moments search purge --dry-run
  moments search purge --older-than 365d --store http://127.0.0.1:9200
"""
