"""Prefect flows: the whole Moments job as one observable, retryable flow run.

``pipeline`` crawls every configured source, classifies what came in,
indexes it, and flags the negative posts that are spreading. A source that
fails (after its retries) is reported and skipped; it does not stop the
others.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed

from flows.report import daily_report
from flows.state import due_brands, mark_ticked, pending_add, pending_ids
from flows.tasks import (
    SourceSpec,
    StageResult,
    classify_file,
    count_jsonl_lines,
    crawl_source,
    flag_pending,
    flag_store,
    index_file,
    maintain_store,
    notify_alerts,
    prepare_file,
    record_sla_breaches,
    repoll_targets,
)
from moments import settings
from moments.config import FAST_SOURCES, MomentsConfig, load_config
from moments.errors import WorkFailed
from moments.records import Flag, Post, utc_now
from search import open_store


@dataclass
class PipelineSummary:
    """What one pipeline run did, stage by stage."""

    run_dir: Path
    crawled: int = 0
    classified: int = 0
    indexed: int = 0
    dropped: int = 0
    flagged: int = 0
    recovered: int = 0
    failed_sources: list[str] = field(default_factory=list)


#: Marks a run directory whose crawled posts have all been indexed.
RUN_DONE = ".indexed"


def unfinished_crawls(runs_root: Path, *, current: Path) -> list[Path]:
    """Crawl files of earlier runs that never reached the index, oldest first.

    A run directory without the :data:`RUN_DONE` marker died (or was killed) after
    crawling; its finished ``crawl-*.jsonl`` files and any ``.partial`` one the
    spider was still writing hold posts the store has not seen. Re-indexing them
    is safe because upserts are idempotent.
    """
    if not runs_root.is_dir():
        return []
    found: list[Path] = []
    for run in sorted(p for p in runs_root.iterdir() if p.is_dir() and p != current):
        if (run / RUN_DONE).exists():
            continue
        found += sorted(run.glob("crawl-*.jsonl")) + sorted(run.glob("crawl-*.jsonl.partial"))
    return found


#: Finished run directories are kept this long (to inspect a run), then removed by the nightly flow.
KEEP_RUNS = timedelta(days=3)


def prune_runs(runs_root: Path) -> int:
    """Remove finished run directories older than :data:`KEEP_RUNS` (wall clock); returns how many."""
    import shutil
    import time

    now = time.time()
    removed = 0
    if not runs_root.is_dir():
        return 0
    for run in runs_root.iterdir():
        marker = run / RUN_DONE
        if marker.exists() and now - marker.stat().st_mtime > KEEP_RUNS.total_seconds():
            shutil.rmtree(run, ignore_errors=True)
            removed += 1
    return removed


def sources_from_config(config: Path | MomentsConfig) -> list[SourceSpec]:
    """Every (brand, source, query) to crawl, from a brands.yaml."""
    if not isinstance(config, MomentsConfig):
        config = load_config(config)
    specs: list[SourceSpec] = []
    for brand in config.brands:
        for source in brand.sources:
            options: list[tuple[str, str]] = []
            if source.source == "appstore":
                options.append(("country", source.country))
            if source.since:
                options.append(("since", source.since))
            specs.append(SourceSpec(brand.name, source.source, source.query, source.base_url, tuple(options)))
    return specs


@flow(name="moments-pipeline", log_prints=False)
def pipeline(
    config_path: Path,
    store_url: str | None = None,
    as_of: datetime | None = None,
    run_dir: Path | None = None,
) -> PipelineSummary:
    """Crawl, classify, index and flag, once, for every source in ``config_path``.

    Args:
        config_path: brands.yaml naming the brands, their keywords and sources.
        store_url: Elasticsearch URL, or ``None`` for ``$MOMENTS_STORE`` / the embedded store.
        as_of: Replay clock for recorded corpora; ``None`` means now.
        run_dir: Where intermediate JSONL files go (default ``$MOMENTS_HOME/runs/<id>``).

    Returns:
        Counts per stage and the sources that failed.
    """
    logger = get_run_logger()
    config = load_config(config_path)
    run_dir = run_dir or settings.runs_dir() / f"{utc_now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = PipelineSummary(run_dir=run_dir)

    # Posts crawled by an earlier run that died before indexing them: the cursor has
    # moved past them, so this run is their only way into the store.
    recovered = unfinished_crawls(run_dir.parent, current=run_dir)
    if recovered:
        logger.warning("recovering %d crawl files from unfinished runs", len(recovered))
    crawled: list[StageResult] = [StageResult(path, count_jsonl_lines(path)) for path in recovered]
    summary.recovered = sum(r.count for r in crawled)
    brand_of: dict[Path, str] = {}
    for spec in sources_from_config(config):
        state = crawl_source(spec, run_dir, config_path=config_path, as_of=as_of, return_state=True)
        if state.is_completed():
            result = state.result()
            assert isinstance(result, StageResult)
            crawled.append(result)
            summary.crawled += result.count
            if result.path is not None:
                brand_of[result.path] = spec.brand
        else:
            summary.failed_sources.append(f"{spec.source}:{spec.query}")
            logger.error("source %s (%s) failed; continuing with the others", spec.source, spec.query)

    for result in crawled:
        if result.path is None or result.count == 0:
            continue
        # Each brand's own taxonomy classifies its posts (recovered files: the default one).
        taxonomy = config.taxonomy_for(brand_of.get(result.path))
        classified = classify_file(result.path, result.path.parent, taxonomy.as_mapping() if taxonomy else None)
        summary.classified += classified.count
        summary.dropped += classified.dropped
        if classified.path is not None:
            indexed = index_file(classified.path, store_url)
            summary.indexed += indexed.count

    for finished in {run_dir, *(path.parent for path in recovered)}:
        (finished / RUN_DONE).touch()

    flagged = flag_store(store_url, as_of or utc_now(), config_path)
    summary.flagged = flagged.count
    logger.info(
        "pipeline done: %d crawled, %d classified, %d indexed, %d flagged, %d sources failed",
        summary.crawled,
        summary.classified,
        summary.indexed,
        summary.flagged,
        len(summary.failed_sources),
    )
    return summary


# =========================================================================== watch and nightly


@dataclass
class TickSummary:
    """What one watch tick (or nightly run) did; ``partial`` when something was left for the next run."""

    flow: str
    run_dir: Path
    now: datetime
    brands: list[str] = field(default_factory=list)
    crawled: int = 0
    repolled: int = 0
    classified: int = 0
    reused: int = 0
    indexed: int = 0
    spooled: int = 0
    rescored: int = 0
    pending: int = 0
    recovered: int = 0
    flags: str = ""
    opened: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    bursts: list[str] = field(default_factory=list)
    notifications: str = ""
    notifications_sent: int = 0
    sla_breaches: int = 0
    maintenance: list[str] = field(default_factory=list)
    source_health: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        """Something failed or was deferred: a source, the store, the flagging or a notification."""
        return bool(self.problems)

    def line(self) -> str:
        """One line for a terminal or a log."""
        text = (
            f"{self.flow} {self.now:%Y-%m-%d %H:%M}Z: {self.crawled} crawled ({self.repolled} re-polled), "
            f"{self.classified} classified, {self.reused} reused, {self.indexed} indexed"
            + (f", {self.spooled} spooled" if self.spooled else "")
            + f"; {self.rescored} re-scored: {self.flags or 'no flags changed'}"
            + (f"; bursts: {', '.join(self.bursts)}" if self.bursts else "")
            + f"; notifications: {self.notifications or 'none'}"
            + (f"; {self.sla_breaches} SLA breaches recorded" if self.sla_breaches else "")
            + (f"; {'; '.join(self.maintenance)}" if self.maintenance else "")
        )
        if self.problems:
            text += f"; PARTIAL: {'; '.join(self.problems)}"
        return text


def _run_dir(kind: str, now: datetime) -> Path:
    path = settings.runs_dir() / f"{kind}-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _final_state(summary: TickSummary) -> Any:
    """Completed, named ``Partial`` when something was left for the next run (Prefect has no partial type)."""
    if summary.partial:
        return Completed(name="Partial", message="; ".join(summary.problems), data=summary)
    return Completed(message=summary.line(), data=summary)


def _brand_specs(config: MomentsConfig, brands: list[str], *, fast_only: bool) -> list[SourceSpec]:
    wanted = {b.casefold() for b in brands}
    return [
        spec
        for spec in sources_from_config(config)
        if spec.brand.casefold() in wanted and (not fast_only or spec.source in FAST_SOURCES)
    ]


def _ingest(
    summary: TickSummary,
    config: MomentsConfig,
    config_path: Path,
    specs: list[SourceSpec],
    store_url: str | None,
    as_of: datetime | None,
    *,
    repoll: bool,
    extra_files: list[Path] = (),  # type: ignore[assignment]
) -> None:
    """Crawl ``specs`` (and re-poll recent negative posts by id), prepare, index; remember what changed."""
    logger = get_run_logger()
    crawled: list[tuple[Path, str | None]] = [(path, None) for path in extra_files]
    for spec in specs:
        state = crawl_source(spec, summary.run_dir, config_path=config_path, as_of=as_of, return_state=True)
        if state.is_completed():
            result = state.result()
            summary.crawled += result.count
            summary.source_health[f"{spec.brand}/{spec.source}:{spec.query}"] = "healthy"
            if result.path is not None and result.count:
                crawled.append((result.path, spec.brand))
        else:
            summary.source_health[f"{spec.brand}/{spec.source}:{spec.query}"] = "unhealthy"
            summary.problems.append(f"source {spec.source}:{spec.query} failed")
            logger.error("source %s (%s) failed; continuing with the others", spec.source, spec.query)
            continue
        if not repoll:
            continue
        ids_path = summary.run_dir / f"repoll-{spec.slug}.txt"
        targets = repoll_targets(
            store_url,
            summary.now,
            config.watch.repoll_window.total_seconds() / 3600,
            config.watch.repoll_limit,
            spec.source,
            spec.brand,
            ids_path,
            return_state=True,
        )
        if not targets.is_completed():
            summary.problems.append(f"re-poll of {spec.source} skipped: the store could not be read")
            continue
        ids_file = targets.result()
        if ids_file is None:
            continue
        repolled = crawl_source(
            replace(spec, ids_file=ids_file), summary.run_dir, config_path=config_path, as_of=as_of, return_state=True
        )
        if repolled.is_completed():
            result = repolled.result()
            summary.crawled += result.count
            summary.repolled += result.count
            if result.path is not None and result.count:
                crawled.append((result.path, spec.brand))
        else:
            summary.problems.append(f"re-poll of {spec.source}:{spec.query} failed")

    for path, brand in crawled:
        taxonomy = config.taxonomy_for(brand)
        prepared = prepare_file(path, path.parent, store_url, taxonomy.as_mapping() if taxonomy else None)
        summary.classified += prepared.classified
        summary.reused += prepared.reused
        # Remember what must be re-scored *before* indexing: a crash after the write
        # must not leave changed posts that no tick will ever look at again.
        pending_add(prepared.changed, summary.now)
        if prepared.path is None or not prepared.count:
            continue
        indexed = index_file.with_options(retries=0)(prepared.path, store_url)
        summary.indexed += indexed.count
        summary.spooled += int(indexed.detail.split()[0]) if indexed.detail else 0
    if summary.spooled:
        summary.problems.append(f"{summary.spooled} posts spooled: the store was unavailable")


def _flag_and_notify(
    summary: TickSummary,
    config: MomentsConfig,
    store_url: str | None,
    *,
    burst_times: list[datetime],
    refresh_baseline: bool,
) -> None:
    """Re-score the pending posts, detect bursts, then notify (the outbox outlives a failed send)."""
    logger = get_run_logger()
    alerts: list[tuple[str, Flag]] = []
    posts_by_id: dict[str, Post] = {}
    try:
        with open_store(store_url) as store:
            report, bursts, posts_by_id, rescored = flag_pending(
                store, config, summary.now, burst_times, refresh_baseline=refresh_baseline
            )
            alerts = report.alerts
            summary.rescored = rescored
            summary.flags = report.summary()
            summary.opened = report.opened
            summary.escalated = report.escalated + report.reopened
            summary.bursts = [f"{b.brand}/{b.touchpoint} {b.count} posts {b.z:+.1f}σ" for b in bursts]
            missing = {pid for _, flag in alerts for pid in flag.post_ids[:5]} - posts_by_id.keys()
            posts_by_id.update(store.get_many(missing))
    except WorkFailed as exc:
        summary.problems.append(f"flagging deferred to the next run: {exc}")
        logger.error("flagging failed (%s); the changed posts stay pending", exc)
    summary.pending = len(pending_ids())
    try:
        delivered = notify_alerts(config, alerts, posts_by_id, summary.now)
    except Exception as exc:  # the outbox keeps every notice: a failed send is retried next tick
        summary.problems.append(f"notifications failed: {exc}")
        logger.exception("notification step failed")
        return
    summary.notifications = delivered.summary()
    summary.notifications_sent = delivered.notices_sent
    if delivered.failed:
        summary.problems.append(f"{len(delivered.failed)} notifications not delivered (kept in the outbox)")


def _care_upkeep(summary: TickSummary, config: MomentsConfig, store_url: str | None, *, nightly: bool) -> None:
    """SLA breaches every tick; dead-letter replay and retention at night. A failure is reported, not fatal."""
    try:
        summary.sla_breaches = record_sla_breaches(store_url, config, summary.now)
    except Exception as exc:  # the next tick records them: recording is idempotent
        summary.problems.append(f"SLA breaches not recorded: {exc}")
    if not nightly:
        return
    try:
        summary.maintenance = maintain_store(store_url, config, summary.now)
    except Exception as exc:  # dead letters stay in their file, old posts for the next night
        summary.problems.append(f"store maintenance failed: {exc}")


@flow(name="moments-watch", log_prints=False)
def watch(
    config_path: Path,
    store_url: str | None = None,
    as_of: datetime | None = None,
    force: bool = False,
) -> Any:
    """One watch tick: poll fast sources, re-poll recent negative posts, flag what changed, notify.

    Args:
        config_path: brands.yaml.
        store_url: Elasticsearch URL, or ``None`` for ``$MOMENTS_STORE`` / the embedded store.
        as_of: Replay clock for recorded sources; ``None`` means now.
        force: Poll every brand now, whatever its ``watch_interval`` says.

    Returns:
        A ``Completed`` state (named ``Partial`` when a source, the store or a send
        failed) carrying a :class:`TickSummary`.
    """
    config = load_config(config_path)
    now = as_of or utc_now()
    summary = TickSummary("watch", _run_dir("watch", now), now)
    summary.brands = due_brands(config, now, force=force)
    specs = _brand_specs(config, summary.brands, fast_only=True)
    _ingest(summary, config, config_path, specs, store_url, as_of, repoll=True)
    (summary.run_dir / RUN_DONE).touch()  # indexed or spooled: nothing for the nightly recovery
    _flag_and_notify(summary, config, store_url, burst_times=[now], refresh_baseline=False)
    _care_upkeep(summary, config, store_url, nightly=False)
    mark_ticked(summary.brands, now)
    get_run_logger().info(summary.line())
    return _final_state(summary)


@flow(name="moments-nightly", log_prints=False)
def nightly(
    config_path: Path,
    store_url: str | None = None,
    as_of: datetime | None = None,
) -> Any:
    """Every source (slow ones too), recovery of unfinished runs, bursts over the day and the daily report.

    Leaves a Prefect markdown artifact (``moments-nightly``) with posts, flags,
    notifications sent and source health; the same report is ``report.md`` in the run
    directory.
    """
    config = load_config(config_path)
    now = as_of or utc_now()
    summary = TickSummary("nightly", _run_dir("nightly", now), now)
    summary.brands = [b.name for b in config.brands]
    recovered = unfinished_crawls(settings.runs_dir(), current=summary.run_dir)
    summary.recovered = sum(count_jsonl_lines(p) for p in recovered)
    specs = _brand_specs(config, summary.brands, fast_only=False)
    _ingest(summary, config, config_path, specs, store_url, as_of, repoll=False, extra_files=recovered)
    for finished in {summary.run_dir, *(path.parent for path in recovered)}:
        (finished / RUN_DONE).touch()
    prune_runs(settings.runs_dir())
    hours = [now - timedelta(hours=h) for h in range(23, -1, -1)]
    _flag_and_notify(summary, config, store_url, burst_times=hours, refresh_baseline=True)
    _care_upkeep(summary, config, store_url, nightly=True)
    markdown = daily_report(summary, config, store_url)
    (summary.run_dir / "report.md").write_text(markdown, encoding="utf-8")
    create_markdown_artifact(markdown=markdown, key="moments-nightly", description=summary.line()[:500])
    get_run_logger().info(summary.line())
    return _final_state(summary)
