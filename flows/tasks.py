"""Prefect tasks: one stage of the pipeline each, small and retryable.

Every task writes its output to a file in the run directory before it
returns (written to a temporary name, then renamed), so a crash mid-run loses
nothing already done and a re-run repeats only what is missing; indexing is an
idempotent upsert by post id, so repeating it never duplicates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.tasks import exponential_backoff

from flows.bursts import Burst, apply_bursts
from flows.flagging import FlagRunReport, apply_flags, refresh_baselines
from flows.state import baselines_path, pending_done, pending_ids
from moments import settings
from moments.config import MomentsConfig, load_config
from moments.errors import WorkFailed
from moments.records import Flag, Post, ReadReport, Reshare, read_posts_file, write_posts
from search import Store, StoreError, open_store
from search.deadletter import replay_dead_letters
from search.retention import purge_all
from triage.service_levels import record_breaches

# Network-facing and store-facing tasks retry with backoff: 10s, 20s, 40s. The first step can be
# set with MOMENTS_RETRY_BACKOFF_SECONDS (the test suite shortens it; read once, at import).
_BACKOFF = exponential_backoff(backoff_factor=float(os.environ.get("MOMENTS_RETRY_BACKOFF_SECONDS") or 10))


@dataclass(frozen=True)
class SourceSpec:
    """One crawl to run: which spider, for which query, against which service."""

    brand: str
    source: str
    query: str
    base_url: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    #: Re-poll these posts by id (a file of native ids) instead of searching.
    ids_file: Path | None = None

    @property
    def slug(self) -> str:
        kind = "-repoll" if self.ids_file is not None else ""
        safe = "".join(c if c.isalnum() else "-" for c in f"{self.brand}-{self.source}-{self.query}")
        return safe.strip("-").lower()[:80] + kind


@dataclass(frozen=True)
class StageResult:
    """What a stage produced: a file (when it writes one) and its counts."""

    path: Path | None
    count: int
    dropped: int = 0
    detail: str = ""


def _atomic_jsonl(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".partial")


def count_jsonl_lines(path: Path) -> int:
    """Non-blank lines of a JSONL file (records, valid or not)."""
    with path.open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


@task(name="crawl", retries=2, retry_delay_seconds=_BACKOFF, tags=["crawl"])
def crawl_source(
    spec: SourceSpec, run_dir: Path, *, config_path: Path | None = None, as_of: datetime | None = None
) -> StageResult:
    """Crawl one source into ``run_dir/crawl-<slug>.jsonl``.

    The spider runs in a child process because Twisted's reactor cannot be
    restarted inside one process, and a crash there must not take the flow down.

    Args:
        spec: The source to crawl.
        run_dir: Where this run keeps its intermediate files.
        config_path: brands.yaml, for brand matching and politeness settings.
        as_of: Replay clock for recorded corpora (``crawled_at``).

    Returns:
        The JSONL file and how many posts it holds.
    """
    logger = get_run_logger()
    out = run_dir / f"crawl-{spec.slug}.jsonl"
    partial = _atomic_jsonl(out)
    command = [
        sys.executable,
        "-m",
        "moments.cli",
        "-q",
        "crawl",
        spec.source,
        "--query",
        spec.query,
        "-o",
        str(partial),
    ]
    if spec.base_url:
        command += ["--base-url", spec.base_url]
    if config_path is not None:
        command += ["--config", str(config_path)]
    if as_of is not None:
        command += ["--as-of", as_of.isoformat()]
    for key, value in spec.options:
        command += [f"--{key}", value]
    if spec.ids_file is not None:
        command += ["--ids", str(spec.ids_file)]
    completed = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
    if completed.returncode != 0:
        tail = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"crawl {spec.source} {spec.query!r} failed: {tail}")
    partial.replace(out)
    count = count_jsonl_lines(out)
    logger.info("crawled %d posts from %s (%s)", count, spec.source, spec.query)
    return StageResult(out, count, detail=completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else "")


_CLASSIFIERS: dict[str, Any] = {}


def _classifier(taxonomy: dict[str, Any] | None = None) -> Any:
    # Loading the encoder takes seconds: one classifier per taxonomy per process.
    key = json.dumps(taxonomy, sort_keys=True)
    if key not in _CLASSIFIERS:
        from models import load_classifier

        _CLASSIFIERS[key] = load_classifier(None, taxonomy)
    return _CLASSIFIERS[key]


@task(name="classify")
def classify_file(source: Path, out_dir: Path, taxonomy: dict[str, Any] | None = None) -> StageResult:
    """Classify every post in ``source`` into ``out_dir/classified-<name>.jsonl``.

    Args:
        source: A crawl file.
        out_dir: Where the classified file goes.
        taxonomy: The brand's touchpoint taxonomy (``TaxonomyConfig.as_mapping()``), or
            ``None`` for the default one.

    Malformed lines are logged with their line number and skipped.
    """
    from models import classify_posts

    name = source.name.removeprefix("crawl-").removesuffix(".partial")
    out = out_dir / f"classified-{name}"
    partial = _atomic_jsonl(out)
    report = ReadReport()
    with partial.open("w", encoding="utf-8") as handle:
        count = write_posts(classify_posts(read_posts_file(source, report), _classifier(taxonomy)), handle)
    partial.replace(out)
    get_run_logger().info("classified %d posts from %s (%d dropped)", count, source.name, len(report.dropped))
    return StageResult(out, count, dropped=len(report.dropped))


@task(name="index", retries=3, retry_delay_seconds=_BACKOFF)
def index_file(source: Path, store_url: str | None) -> StageResult:
    """Upsert every post in ``source`` into the store (idempotent by post id).

    When Elasticsearch is down, even at open, the posts are spooled to disk and the
    next write replays them: the result's detail says how many (``"N spooled"``).
    """
    report = ReadReport()
    chosen = settings.store_url(store_url)
    try:
        store = open_store(store_url)
    except StoreError as exc:
        if not settings.is_elasticsearch(chosen):
            raise
        from search.elastic import spool_posts

        posts = list(read_posts_file(source, report))
        spool_posts(posts)
        get_run_logger().warning("store unavailable (%s); spooled %d posts", exc, len(posts))
        return StageResult(None, 0, dropped=len(report.dropped), detail=f"{len(posts)} spooled")
    with store:
        result = store.upsert(read_posts_file(source, report))
        location = store.location
    get_run_logger().info("indexed %d posts into %s (%d spooled)", result.written, location, result.spooled)
    return StageResult(None, result.written, dropped=len(report.dropped), detail=f"{result.spooled} spooled")


@task(name="flag", retries=2, retry_delay_seconds=_BACKOFF)
def flag_store(store_url: str | None, now: datetime, config_path: Path | None = None) -> StageResult:
    """Evaluate every stored post; open, escalate or update flags under each brand's ``flag_rules``."""
    config = load_config(config_path) if config_path is not None else None
    with open_store(store_url) as store:
        report = apply_flags(store, now, config.rules_for if config else None)
        active = store.count_flags()
    get_run_logger().info("flagging: %s; %d flags active", report.summary(), active)
    return StageResult(None, report.changed, detail=f"{active} active")


@task(name="sla-breaches", retries=2, retry_delay_seconds=_BACKOFF)
def record_sla_breaches(store_url: str | None, config: MomentsConfig, now: datetime) -> int:
    """Write an ``sla_breached`` event for every active flag that has just missed a target (once each).

    The triage app does the same when it serves the queue; a schedule does it too, so a
    breach is on record (and in the team metrics) even when nobody has the queue open.
    """
    with open_store(store_url) as store:
        written = record_breaches(store, now, config=config)
    if written:
        get_run_logger().info("SLA: %d breaches recorded", len(written))
    return len(written)


@task(name="store-maintenance", retries=1, retry_delay_seconds=_BACKOFF)
def maintain_store(store_url: str | None, config: MomentsConfig, now: datetime) -> list[str]:
    """Nightly upkeep: retry dead-lettered posts, then purge posts, snapshots and closed flags past ``retention``.

    Returns one line per step for the nightly report. The integ-test Elasticsearch has no
    ILM, so retention is this scheduled purge on both stores (a production cluster may add
    an ILM delete phase on the snapshot indices).
    """
    lines = []
    with open_store(store_url) as store:
        replayed = replay_dead_letters(store)
        if replayed.replayed or replayed.still_rejected or replayed.unreadable:
            lines.append(str(replayed))
        retention = config.retention
        if retention.posts is not None or retention.snapshots is not None or retention.flags is not None:
            lines.append(str(purge_all(store, retention, now)))
    for line in lines:
        get_run_logger().info("store maintenance: %s", line)
    return lines


# --------------------------------------------------------------------------- watch and nightly


@dataclass
class PreparedFile:
    """A crawl file made ready to index: stored history merged, classified only where needed."""

    path: Path | None
    count: int
    changed: list[str]
    classified: int
    reused: int
    dropped: int


def _same_text(a: Post, b: Post) -> bool:
    return a.text == b.text and a.title == b.title


def _merged_reshares(stored: list[Reshare], crawled: list[Reshare]) -> list[Reshare]:
    """Every account that reshared, once, with the earliest time it was seen (a crawl may list none)."""
    first: dict[str, Reshare] = {}
    for reshare in [*stored, *crawled]:
        known = first.get(reshare.handle)
        if known is None or reshare.at < known.at:
            followers = reshare.followers if reshare.followers is not None else (known.followers if known else None)
            first[reshare.handle] = reshare.model_copy(update={"followers": followers})
        elif known.followers is None and reshare.followers is not None:
            first[reshare.handle] = known.model_copy(update={"followers": reshare.followers})
    return sorted(first.values(), key=lambda r: r.at)


def merge_stored(post: Post, stored: Post | None) -> tuple[Post, bool]:
    """``post`` as crawled now, with what the store knew kept; and whether it changed.

    * Engagement snapshots are the union of both histories (by time), so a lost
      crawl state never erases the velocity the store already knew; so are the
      accounts that reshared it (each with the earliest time it was seen).
    * The stored classification is kept when the text is the same: re-polling a post
      for its engagement must not pay for the classifier again.
    """
    if stored is None:
        return post, True
    by_time = {snap.at: snap for snap in stored.engagement_history}
    by_time.update({snap.at: snap for snap in post.engagement_history})
    history = [by_time[at] for at in sorted(by_time)]
    update: dict[str, Any] = {"engagement_history": history}
    reshares = _merged_reshares(stored.reshares, post.reshares)
    if reshares != post.reshares:
        update["reshares"] = reshares
    if not post.brand and stored.brand:  # a re-poll by id matches no keyword: it is still that brand's post
        update["brand"] = stored.brand
    if stored.classification is not None and _same_text(post, stored):
        update["classification"] = stored.classification
    merged = post.model_copy(update=update)
    changed = (
        not _same_text(post, stored)
        or merged.engagement != stored.engagement
        or len(history) != len(stored.engagement_history)
        or len(merged.reshares) != len(stored.reshares)
        or merged.classification is None
    )
    return merged, changed


@task(name="prepare", retries=1, retry_delay_seconds=_BACKOFF)
def prepare_file(
    source: Path, out_dir: Path, store_url: str | None, taxonomy: dict[str, Any] | None = None
) -> PreparedFile:
    """Merge a crawl file with the stored posts and classify only what is new or edited.

    When the store cannot be read (Elasticsearch down), every post is classified
    and written as crawled: the crawl state carries the engagement history, and the
    upsert spools, so nothing is lost; the tick is just slower.
    """
    from models import classify_posts

    report = ReadReport()
    crawled = list(read_posts_file(source, report))
    stored: dict[str, Post] = {}
    try:
        with open_store(store_url) as store:
            stored = store.get_many(p.id for p in crawled)
    except WorkFailed as exc:
        get_run_logger().warning("store unavailable while preparing %s (%s); classifying all", source.name, exc)
    ready: list[Post] = []
    to_classify: list[Post] = []
    changed: list[str] = []
    for post in crawled:
        merged, did_change = merge_stored(post, stored.get(post.id))
        if did_change:
            changed.append(post.id)
        (ready if merged.classification is not None else to_classify).append(merged)
    classified = list(classify_posts(to_classify, _classifier(taxonomy))) if to_classify else []
    name = source.name.removeprefix("crawl-").removesuffix(".partial")
    out = out_dir / f"prepared-{name}"
    partial = _atomic_jsonl(out)
    with partial.open("w", encoding="utf-8") as handle:
        count = write_posts([*ready, *classified], handle)
    partial.replace(out)
    get_run_logger().info(
        "prepared %d posts from %s: %d classified, %d reused, %d changed",
        count,
        source.name,
        len(classified),
        len(ready),
        len(changed),
    )
    return PreparedFile(out, count, changed, len(classified), len(ready), len(report.dropped))


@task(name="repoll-targets")
def repoll_targets(
    store_url: str | None, now: datetime, window_hours: float, limit: int, source: str, brand: str, out: Path
) -> Path | None:
    """Write the native ids of the brand's recent negative posts on ``source`` to ``out`` (``None``: none)."""
    with open_store(store_url) as store:
        posts = store.recent_posts(
            since=now - timedelta(hours=window_hours),
            until=now,
            sentiment="negative",
            sources=[source],
            brand=brand,
            limit=limit,
        )
        ids = [post.native_id for post in posts]
    if not ids:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(ids) + "\n", encoding="utf-8")
    return out


def flag_pending(
    store: Store,
    config: MomentsConfig,
    now: datetime,
    burst_times: list[datetime],
    *,
    refresh_baseline: bool,
) -> tuple[FlagRunReport, list[Burst], dict[str, Post], int]:
    """Re-score the pending posts and detect bursts at ``burst_times``; forget what was re-scored.

    Only the posts that changed since their last evaluation are read (by id), so a
    tick's cost follows the new and changed posts, never the size of the store.

    Returns:
        The flag changes, the bursts found, the posts read (for notifications) and how
        many were re-scored.
    """
    store.upsert([])  # replays posts spooled while the store was down, before reading them
    baselines = refresh_baselines(store, now, baselines_path(), force=refresh_baseline)
    waiting = pending_ids()
    found = store.get_many(waiting)
    report = apply_flags(
        store, now, config.rules_for, posts=[found[i] for i in waiting if i in found], baselines=baselines
    )
    bursts: list[Burst] = []
    for at in burst_times:
        detected, burst_report = apply_bursts(store, at, config.bursts, config.flag_rules)
        bursts += detected
        report.merge(burst_report)
    pending_done(found, [i for i in waiting if i not in found], now)
    return report, bursts, found, len(found)


def notify_alerts(config: MomentsConfig, alerts: list[tuple[str, Flag]], posts: dict[str, Post], now: datetime) -> Any:
    """Queue a notice for each opened or escalated flag in the outbox, then deliver what is due.

    The outbox is written first and delivery marks a notice sent only on success, so a
    failed send is retried by the next run and a re-run never sends twice.
    """
    from flows.notify import Notice, Outbox, deliver, enqueue

    notices = [
        Notice.of(
            flag,
            "escalated" if action == "escalated" else "opened",
            [posts[p] for p in flag.post_ids[:5] if p in posts],
            now,
        )
        for action, flag in alerts
    ]
    with Outbox() as outbox:
        if notices:
            enqueue(outbox, config, notices)
        return deliver(outbox, config, now)
