"""Retention: ``moments search purge [--older-than 365d] [--dry-run]`` removes posts past their keep-by date.

The period comes from ``--older-than`` or from ``retention.posts`` in brands.yaml
(:class:`moments.config.Retention`; unset means keep forever). A post is old when it
was created before ``now - period`` (crawled before it, when the source gave no
creation time). Engagement snapshots observed before the cutoff go too.

On Elasticsearch this is a scheduled delete (scan plus bulk delete), not ILM: the
integ-test distribution the tests run on has neither ILM nor ``_delete_by_query``. On a
production cluster, ILM with a delete phase on the monthly snapshot indices does the
same for snapshots; posts live in one index behind an alias, so they still need this
purge. On the embedded store it is a ``DELETE``, 500 rows per transaction.

The nightly flow calls :func:`purge_posts` with the loaded config (see the report to
the lead: ``flows/`` wires it).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime, timedelta

from moments import settings
from moments.config import load_config, parse_duration
from moments.errors import UsageError
from moments.records import utc_now
from search.store import Store


@dataclass(frozen=True)
class PurgeReport:
    """What a purge removed (or, dry, would remove)."""

    posts: int
    cutoff: datetime
    period: timedelta
    dry_run: bool = False

    def __str__(self) -> str:
        verb = "would purge" if self.dry_run else "purged"
        return f"{verb} {self.posts} posts created before {self.cutoff.isoformat(timespec='seconds')}"


def purge_posts(store: Store, period: timedelta, *, dry_run: bool = False, now: datetime | None = None) -> PurgeReport:
    """Remove (or count, with ``dry_run``) the posts older than ``period``.

    Args:
        store: The store.
        period: How long posts are kept (``retention.posts``); must be positive.
        dry_run: Count only.
        now: The clock (default: now, UTC).

    Raises:
        UsageError: ``period`` is not positive.
    """
    if period <= timedelta(0):
        raise UsageError(f"a retention period must be positive, not {period}")
    cutoff = (now or utc_now()) - period
    return PurgeReport(store.purge(cutoff, dry_run=dry_run), cutoff, period, dry_run)


def _period(args: argparse.Namespace) -> timedelta:
    """``--older-than``, else ``retention.posts`` from the config; a clear error when neither says."""
    if args.older_than:
        try:
            return parse_duration(args.older_than)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--older-than: {exc}") from None
    path = settings.config_path(getattr(args, "config", None))
    if not path.is_file():
        raise UsageError(f"say how old: --older-than 365d, or set retention.posts in {path} (not found)")
    period = load_config(path).retention.posts  # a bad file is a ConfigError naming the line
    if period is None:
        raise UsageError(f"retention.posts is not set in {path}: posts are kept forever; or give --older-than 365d")
    return period


def run_purge(args: argparse.Namespace) -> int:
    """``moments search purge``: purge (or count, with ``--dry-run``) posts past the retention period."""
    from search.backends import open_store

    period = _period(args)  # bad input is found before a store is opened
    with open_store(args.store) as store:
        report = purge_posts(store, period, dry_run=args.dry_run)
        location = store.location
    print(f"{report} from {location}")
    return 0


def configure_purge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than", metavar="AGE", help="e.g. 365d (default: retention.posts in brands.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    parser.add_argument("--config", metavar="FILE", help="brands.yaml to read retention.posts from")


PURGE_DESCRIPTION = """\
Delete posts older than the retention period: created before now minus the period
(crawled before it, when the source gave no creation time), with their engagement
snapshots. The period is --older-than, or retention.posts in brands.yaml:

  retention:
    posts: 365d

The nightly flow runs this; run it by hand with --dry-run to see what would go.

examples:
  moments search purge --dry-run
  moments search purge --older-than 365d --store http://127.0.0.1:9200
"""
