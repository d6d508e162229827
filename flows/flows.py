"""Prefect flows: the whole Moments job as one observable, retryable flow run.

``pipeline`` crawls every configured source, classifies what came in,
indexes it, and flags the negative posts that are spreading. A source that
fails (after its retries) is reported and skipped; it does not stop the
others.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger

from flows.tasks import SourceSpec, StageResult, classify_file, count_jsonl_lines, crawl_source, flag_store, index_file
from moments import settings
from moments.config import MomentsConfig, load_config
from moments.records import utc_now


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
