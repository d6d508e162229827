"""Orchestration subcommands of ``moments``: flag, flags, run and demo."""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path

from crawlers.schema import utc_now
from search.cli import STORE_HELP


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"timestamp needs a timezone (e.g. Z): {value!r}")
    return parsed


def _prepare_prefect(verbose: int) -> None:
    """Settings for a local Prefect run; a user's own PREFECT_* environment wins.

    Without PREFECT_API_URL, Prefect starts a temporary local API server whose
    database lives in PREFECT_HOME; we keep that under $MOMENTS_HOME so a demo
    is self-contained. Its first start migrates the database, which can take
    well over Prefect's default 20 s on a busy two-core machine.
    """
    from search import default_home

    prefect_home = (default_home() / "prefect").resolve()
    prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(prefect_home))
    # Prefect talks a lot at INFO; keep a user's terminal for our own output unless asked.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def _cmd_flag(args: argparse.Namespace) -> int:
    from flows.flagging import apply_flags
    from search import open_store

    now = args.as_of or utc_now()
    with open_store(args.store) as store:
        flags = apply_flags(store, now)
        open_count = len(store.open_flags(limit=10_000))
        location = store.location
    by_priority = {p: sum(1 for f in flags.values() if f.priority == p) for p in ("P1", "P2", "P3", "P4")}
    summary = ", ".join(f"{n} {p}" for p, n in by_priority.items() if n)
    print(f"flagged {len(flags)} posts in {location} ({summary or 'none'}); {open_count} flags open")
    return 0


def _cmd_flags(args: argparse.Namespace) -> int:
    from flows.report import print_flags
    from search import open_store

    with open_store(args.store) as store:
        posts = store.open_flags(brand=args.brand, limit=args.limit)
    print_flags(posts, as_json=args.json)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    _prepare_prefect(args.verbose)
    from flows.cli import CommandError
    from flows.flows import pipeline

    if not args.config.exists():
        raise CommandError(f"config not found: {args.config} (see crawlers/brands.example.yaml)")
    summary = pipeline(args.config, store_url=args.store, as_of=args.as_of)
    print(
        f"run: {summary.crawled} crawled, {summary.classified} classified, {summary.indexed} indexed, "
        f"{summary.flagged} flagged; intermediate files in {summary.run_dir}"
    )
    if summary.failed_sources:
        print(f"run: {len(summary.failed_sources)} sources failed: {', '.join(summary.failed_sources)}")
        return 2
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    _prepare_prefect(args.verbose)
    from flows.demo import run_demo

    return run_demo(verbose=args.verbose)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``flag``, ``flags``, ``run`` and ``demo`` to the ``moments`` parser."""
    fmt = argparse.RawDescriptionHelpFormatter

    flag = subparsers.add_parser(
        "flag",
        help="flag negative posts that are spreading fast",
        formatter_class=fmt,
        description=(
            "Evaluate every stored post and flag those where the customer had a bad moment\n"
            "(negative sentiment or a moment of misery) and engagement velocity is high.\n"
            "Each flag gets a priority (P1 highest) and the reasons behind it. Flags a care\n"
            "agent already acknowledged or resolved keep their status.\n\n"
            "example:\n  moments flag --store http://127.0.0.1:9200"
        ),
    )
    flag.add_argument("--store", help=STORE_HELP)
    flag.add_argument("--as-of", type=_parse_time, help="evaluation time (ISO 8601, default now)")
    flag.set_defaults(handler=_cmd_flag)

    flags = subparsers.add_parser(
        "flags",
        help="list open flags, most urgent first",
        formatter_class=fmt,
        description=(
            "The care team's queue: open flags by priority, with touchpoint, reasons,\n"
            "an excerpt and the link to answer the customer.\n\n"
            "examples:\n  moments flags\n  moments flags --brand 'Northwind Air' --json | jq '.[0].flag'"
        ),
    )
    flags.add_argument("--store", help=STORE_HELP)
    flags.add_argument("--brand", help="only this brand")
    flags.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    flags.add_argument("--json", action="store_true", help="print full posts as a JSON array")
    flags.set_defaults(handler=_cmd_flags)

    run = subparsers.add_parser(
        "run",
        help="crawl, classify, index and flag once, as a Prefect flow run",
        formatter_class=fmt,
        description=(
            "Run the whole pipeline once for every brand and source in the config, as a\n"
            "Prefect flow run (retries with backoff; a failing source does not stop the others).\n"
            "Intermediate JSONL files are kept under $MOMENTS_HOME/runs/ so nothing is lost\n"
            "if a run dies; re-running never duplicates posts.\n\n"
            "example:\n  moments run --config brands.yaml --store http://127.0.0.1:9200"
        ),
    )
    run.add_argument("--config", type=Path, default=Path("brands.yaml"), help="brands.yaml (default ./brands.yaml)")
    run.add_argument("--store", help=STORE_HELP)
    run.add_argument("--as-of", type=_parse_time, help="replay clock for recorded corpora (ISO 8601)")
    run.set_defaults(handler=_cmd_run)

    demo = subparsers.add_parser(
        "demo",
        help="the whole job, offline, on a bundled corpus",
        formatter_class=fmt,
        description=(
            "Serve a bundled corpus of recorded Mastodon, Reddit and App Store responses from\n"
            "a local HTTP server, crawl it with the real spiders, then classify, index into the\n"
            "embedded store ($MOMENTS_HOME, default ./var) and flag, as one Prefect flow run.\n"
            "Prints the flag queue and the per-touchpoint scorecard. Safe to re-run: counts stay\n"
            "the same and nothing is duplicated.\n\n"
            "example:\n  moments demo && moments search delay"
        ),
    )
    demo.set_defaults(handler=_cmd_demo)
