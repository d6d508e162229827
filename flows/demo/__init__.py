"""``moments demo``: the whole job, offline, on the bundled recorded corpus.

The corpus was recorded at :data:`AS_OF`; the crawl replays it "as of" that
moment, so engagement velocities, flags and counts are the same on every run
and every machine.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

import crawlers
from crawlers.mockserver import serve_recordings
from flows.report import flags_table, scorecard_table
from moments import settings
from search import open_store

AS_OF = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
BRAND = "Northwind Air"
CORPUS = Path(crawlers.__file__).parent / "recorded" / "demo"
CONFIG_TEMPLATE = Path(__file__).parent / "brands.yaml"


def run_demo(verbose: int = 0) -> int:
    """Serve the corpus, run the pipeline flow into the embedded store, print the result.

    Returns:
        The process exit status (0 when the pipeline ran and every source succeeded).
    """
    from flows.flows import pipeline

    console = Console()
    home = settings.home()
    home.mkdir(parents=True, exist_ok=True)
    store_path = home / "moments.db"
    started = time.monotonic()
    with serve_recordings(CORPUS) as base_url:
        config = home / "demo-brands.yaml"
        config.write_text(CONFIG_TEMPLATE.read_text(encoding="utf-8").replace("{base_url}", base_url), encoding="utf-8")
        console.print(
            f"[bold]Moments demo[/]: replaying {CORPUS.name}/ as of {AS_OF:%Y-%m-%d %H:%M} UTC from {base_url}"
        )
        summary = pipeline(config, store_url=str(store_path), as_of=AS_OF)

    with open_store(str(store_path)) as store:
        posts = sum(1 for _ in store.scan(brand=BRAND))
        open_flags = store.list_flags(brand=BRAND, limit=1000)
        flagged_posts = {pid: store.get(pid) for flag in open_flags for pid in flag.post_ids[:1]}
        scorecard = store.touchpoint_summary(brand=BRAND)

    console.print(
        f"pipeline: {summary.crawled} crawled, {summary.classified} classified, {summary.indexed} indexed, "
        f"{summary.dropped} malformed lines dropped, {summary.flagged} flags opened or changed "
        f"in {time.monotonic() - started:.1f}s (files in {summary.run_dir})"
    )
    if summary.failed_sources:
        console.print(f"[red]failed sources:[/] {', '.join(summary.failed_sources)}")
    console.print(flags_table(open_flags, flagged_posts))
    console.print(scorecard_table(scorecard))
    console.print(f"store: {store_path}  (try: moments search delay, moments flags, moments flags show ID)")
    print(f"demo: {posts} posts, {len(open_flags)} flags")
    return 0 if not summary.failed_sources else 1
