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
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.tasks import exponential_backoff

from flows.flagging import apply_flags
from moments.config import load_config
from moments.records import ReadReport, read_posts_file, write_posts
from search import open_store

# Network-facing and store-facing tasks retry with backoff: 10s, 20s, 40s.
_BACKOFF = exponential_backoff(backoff_factor=10)


@dataclass(frozen=True)
class SourceSpec:
    """One crawl to run: which spider, for which query, against which service."""

    brand: str
    source: str
    query: str
    base_url: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    @property
    def slug(self) -> str:
        safe = "".join(c if c.isalnum() else "-" for c in f"{self.brand}-{self.source}-{self.query}")
        return safe.strip("-").lower()[:80]


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
    """Upsert every post in ``source`` into the store (idempotent by post id)."""
    report = ReadReport()
    with open_store(store_url) as store:
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
        active = len(store.list_flags(limit=100_000))
    get_run_logger().info("flagging: %s; %d flags active", report.summary(), active)
    return StageResult(None, report.changed, detail=f"{active} active")
