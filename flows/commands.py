"""Orchestration subcommands of ``moments``: flag, flags (list, show, update), run and demo."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from moments import settings
from moments.cli import Commands
from moments.config import MomentsConfig, load_config
from moments.errors import UsageError
from moments.records import FLAG_STATUSES, EventAction, Flag, utc_now
from search import ACTIVE_STATUSES, FlagChange


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
    prefect_home = settings.prefect_home().resolve()
    prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(prefect_home))
    # Prefect talks a lot at INFO; keep a user's terminal for our own output unless asked.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def _config_or_none(path: Path | None) -> MomentsConfig | None:
    """The config named by ``--config``, or ``$MOMENTS_CONFIG`` / ./brands.yaml when that exists."""
    if path is not None:
        return load_config(path)
    default = settings.config_path()
    return load_config(default) if default.is_file() else None


def _cmd_flag(args: argparse.Namespace) -> int:
    from flows.flagging import apply_flags
    from search import open_store

    config = _config_or_none(args.config)
    now = args.as_of or utc_now()
    with open_store(args.store) as store:
        report = apply_flags(store, now, config.rules_for if config else None)
        active = store.list_flags(limit=100_000)
        location = store.location
    by_priority = {p: sum(1 for f in active if f.priority == p) for p in ("P1", "P2", "P3", "P4")}
    summary = ", ".join(f"{n} {p}" for p, n in by_priority.items() if n)
    print(f"flags in {location}: {report.summary()}; {len(active)} active ({summary or 'none'})")
    return 0


def _statuses(value: str | None) -> tuple[str, ...] | None:
    """``--status``: comma-separated statuses, ``active`` (the default) or ``all``."""
    if value is None or value == "active":
        return ACTIVE_STATUSES
    if value == "all":
        return None
    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [s for s in chosen if s not in FLAG_STATUSES]
    if unknown or not chosen:
        raise UsageError(
            f"unknown status {', '.join(unknown) or value!r}; use {', '.join(FLAG_STATUSES)}, active or all"
        )
    return chosen


def _cmd_flags_list(args: argparse.Namespace) -> int:
    from flows.report import print_flags
    from search import open_store

    with open_store(args.store) as store:
        flags = store.list_flags(status=_statuses(args.status), brand=args.brand, limit=args.limit)
        posts = {pid: store.get(pid) for flag in flags for pid in flag.post_ids[:1]}
    print_flags(flags, posts, as_json=args.json)
    return 0


def _cmd_flags_show(args: argparse.Namespace) -> int:
    from flows.report import print_flag_detail
    from search import open_store

    with open_store(args.store) as store:
        flag = store.get_flag(args.flag_id)
        if flag is None:
            raise UsageError(f"no flag with id {args.flag_id!r} (see: moments flags list --status all)")
        events = store.flag_events(flag.id)
        posts = [post for pid in flag.post_ids if (post := store.get(pid)) is not None]
    print_flag_detail(flag, events, posts, as_json=args.json)
    return 0


def _cmd_flags_update(args: argparse.Namespace) -> int:
    from search import open_store

    if args.status is None and args.assignee is None and args.note is None:
        raise UsageError("nothing to change: give --status, --assignee and/or --note")
    if args.status is not None and args.status not in FLAG_STATUSES:
        raise UsageError(f"unknown status {args.status!r}; use one of {', '.join(FLAG_STATUSES)}")

    def change(current: Flag) -> FlagChange | None:
        updated = current
        actions: list[EventAction] = []
        if args.status is not None and args.status != current.status:
            updated = updated.with_status(args.status, utc_now())
            actions.append("status")
        if args.assignee is not None and (args.assignee or None) != current.assignee:
            updated = updated.model_copy(update={"assignee": args.assignee or None})
            actions.append("assigned")
        if not actions and args.note is None:
            return None
        action: EventAction = actions[0] if len(actions) == 1 else ("changed" if actions else "note")
        return FlagChange(updated, action, args.note)

    with open_store(args.store) as store:
        try:
            flag = store.change_flag(args.flag_id, change, actor=args.actor, if_version=args.if_version)
        except KeyError:
            raise UsageError(f"no flag with id {args.flag_id!r}") from None
    print(
        f"{flag.id}: version {flag.version}, status {flag.status}"
        + (f", assigned to {flag.assignee}" if flag.assignee else "")
    )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    _prepare_prefect(args.verbose)
    from flows.flows import pipeline

    config_path = settings.config_path(args.config)
    load_config(config_path)  # a bad config is one line and exit 2, before any Prefect start-up
    summary = pipeline(config_path, store_url=args.store, as_of=args.as_of)
    print(
        f"run: {summary.crawled} crawled, {summary.classified} classified, {summary.indexed} indexed, "
        f"{summary.flagged} flags opened or changed; intermediate files in {summary.run_dir}"
    )
    if summary.failed_sources:
        print(f"run: {len(summary.failed_sources)} sources failed: {', '.join(summary.failed_sources)}")
        return 1
    return 0


def _run_watch_tick(config_path: Path, store: str | None, as_of: datetime | None, force: bool) -> bool:
    """One tick, printed as one line; returns whether it was complete (not partial)."""
    from flows.flows import watch

    state: Any = watch(config_path, store_url=store, as_of=as_of, force=force, return_state=True)
    if state.is_failed():
        print(f"watch: the tick failed: {state.message}", file=sys.stderr)
        return False
    summary = state.result()
    print(summary.line(), file=sys.stderr if summary.partial else sys.stdout, flush=True)
    return not summary.partial


def _cmd_watch(args: argparse.Namespace) -> int:
    import time

    from flows.state import watch_interval

    _prepare_prefect(args.verbose)
    config_path = settings.config_path(args.config)
    config = load_config(config_path)  # a bad config is one line and exit 2, before Prefect starts
    if args.once:
        complete = _run_watch_tick(config_path, args.store, args.as_of, force=True)
        return 1 if args.strict and not complete else 0
    interval = args.interval if args.interval is not None else watch_interval(config).total_seconds()
    print(f"watch: a tick every {interval:g} s (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        while True:
            started = time.monotonic()
            # Each tick re-reads the config, so an edited brands.yaml takes effect without a restart.
            _run_watch_tick(config_path, args.store, None, force=False)
            time.sleep(max(interval - (time.monotonic() - started), 0.0))
    except KeyboardInterrupt:
        print("watch: stopped", file=sys.stderr)
        return 0


def _cmd_nightly(args: argparse.Namespace) -> int:
    _prepare_prefect(args.verbose)
    from flows.flows import nightly

    config_path = settings.config_path(args.config)
    load_config(config_path)
    state: Any = nightly(config_path, store_url=args.store, as_of=args.as_of, return_state=True)
    if state.is_failed():
        print(f"nightly: the run failed: {state.message}", file=sys.stderr)
        return 1
    summary = state.result()
    print(summary.line())
    print(f"nightly: report in {summary.run_dir / 'report.md'}")
    return 1 if args.strict and summary.partial else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    _prepare_prefect(args.verbose)
    from flows.deploy import serve_flows

    config_path = settings.config_path(args.config)
    load_config(config_path)
    serve_flows(config_path.resolve(), store_url=args.store)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    _prepare_prefect(args.verbose)
    from flows.demo import run_demo

    return run_demo(verbose=args.verbose)


FLAG_DESCRIPTION = """\
Evaluate every stored post and flag those where the customer had a bad moment
(negative sentiment or a moment of misery) and engagement velocity is high.
Each flag gets a priority (P1 highest) and the reasons behind it. A post has one
flag at most: re-running escalates it (a higher priority), refreshes its figures,
or leaves it alone. A flag a person resolved or dismissed is reopened only when
its score grew by flag_rules.reopen_margin. Thresholds come from flag_rules in
--config (per-brand overrides allowed).

example:
  moments flag --config brands.yaml --store http://127.0.0.1:9200
"""

WATCH_DESCRIPTION = """\
The unattended loop that catches a spreading moment of misery within minutes.
Each tick, for every brand whose watch_interval has passed:
  1. crawls the fast sources (Mastodon, Bluesky, Reddit, Hacker News, Lemmy);
  2. re-polls, by id, the engagement of the brand's negative posts of the last
     72 h (watch.repoll_window);
  3. classifies what is new (a re-polled post keeps its classification) and indexes;
  4. re-scores only the posts that changed, and detects bursts;
  5. opens or escalates flags and notifies the channels in `notifications`.
A tick's cost follows the new and changed posts, not the size of the store. If
the store is down, posts are spooled and the changed ones stay pending for the
next tick; a failing source or endpoint does not stop the others. The tick then
ends "Partial" (a Prefect state named Partial), and still exits 0 unless --strict.

examples:
  moments watch --config brands.yaml --once       # one tick for every brand
  moments watch --config brands.yaml              # loop, every watch interval
  moments watch --config brands.yaml --interval 60
"""

NIGHTLY_DESCRIPTION = """\
Every source of every brand, the slow ones too (App Store, review pages, RSS,
imports); recovery of runs that died before indexing; velocity baselines
rebuilt from the last 7 days; bursts detected hour by hour over the day; and the
daily report, kept as a Prefect markdown artifact (key moments-nightly) and as
report.md in the run directory.

example:
  moments nightly --config brands.yaml
"""

SERVE_DESCRIPTION = """\
Serve the watch and nightly flows on the schedules in the config (Prefect's
`serve`): watch every schedules.watch interval (or the shortest brand
watch_interval), nightly on its cron line in its time zone. Runs until stopped.
To spread the work over machines, deploy to a Prefect server with workers
instead: see prefect.yaml and the README.

example:
  moments serve --config brands.yaml
"""

FLAGS_DESCRIPTION = """\
The care team's queue and its work items. A flag is a record of its own: id,
kind (post or burst), brand, touchpoint, the posts behind it, priority, score,
reasons, status (open, acknowledged, responded, resolved, dismissed), assignee,
timestamps and a version. Every change is a compare-and-set on the version and
adds an event to the flag's append-only log.

Without an action, lists the active flags (like `moments flags list`).

examples:
  moments flags                                   # open, acknowledged and responded flags
  moments flags list --status resolved,dismissed --brand 'Northwind Air' --json
  moments flags show post:mastodon:1101           # reasons, posts and the event log
  moments flags update post:mastodon:1101 --status acknowledged --assignee dana --actor dana
  moments flags update post:mastodon:1101 --status resolved --note "refunded" --actor dana --if-version 3

exit status: 0 done; 1 the store failed; 2 bad usage, unknown flag, or a stale
--if-version (someone changed the flag since you read it: show it again).
"""


def _list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--status",
        help=f"comma-separated statuses ({', '.join(FLAG_STATUSES)}), active (default) or all",
    )
    parser.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")


def register(commands: Commands) -> None:
    """Add ``flag``, ``flags``, ``run``, ``watch``, ``nightly``, ``serve`` and ``demo`` to ``moments``."""
    flag = commands.add(
        "flag",
        help="flag negative posts that are spreading fast",
        description=FLAG_DESCRIPTION,
        handler=_cmd_flag,
        options=("store", "config"),
    )
    flag.add_argument("--as-of", type=_parse_time, help="evaluation time (ISO 8601, default now)")

    flags = commands.add(
        "flags",
        help="the care team's flags: list, show, update",
        description=FLAGS_DESCRIPTION,
        handler=_cmd_flags_list,
        options=("store", "brand", "json"),
    )
    _list_options(flags)
    actions = commands.group(flags, dest="flags_action")
    listing = actions.add(
        "list",
        help="list flags, most urgent first",
        description="The queue: flags by priority, then score, then age.\n\n"
        "example:\n  moments flags list --status open --brand 'Northwind Air' --json",
        handler=_cmd_flags_list,
        options=("store", "brand", "json"),
    )
    _list_options(listing)
    show = actions.add(
        "show",
        help="one flag with its posts, reasons and event log",
        description="Show a flag: its figures and reasons, the posts behind it, and every event.\n\n"
        "example:\n  moments flags show post:mastodon:1101 --json",
        handler=_cmd_flags_show,
        options=("store", "json"),
    )
    show.add_argument("flag_id", metavar="ID", help="the flag's id (see moments flags list)")
    update = actions.add(
        "update",
        help="change a flag's status or assignee, or add a note",
        description="Change a flag as a person, with an event in its log. With --if-version the change\n"
        "is refused (exit 2) when the flag moved on since you read that version.\n\n"
        "example:\n  moments flags update post:mastodon:1101 --status acknowledged --actor dana --if-version 1",
        handler=_cmd_flags_update,
        options=("store",),
    )
    update.add_argument("flag_id", metavar="ID", help="the flag's id")
    update.add_argument("--status", help=f"new status: {', '.join(FLAG_STATUSES)}")
    update.add_argument("--assignee", help="who works it ('' to unassign)")
    update.add_argument("--note", help="a note for the event log")
    update.add_argument("--actor", required=True, help="who is making the change (goes in the event log)")
    update.add_argument("--if-version", type=int, help="only if the flag is still at this version")

    run = commands.add(
        "run",
        help="crawl, classify, index and flag once, as a Prefect flow run",
        description=(
            "Run the whole pipeline once for every brand and source in the config, as a\n"
            "Prefect flow run (retries with backoff; a failing source does not stop the others).\n"
            "Each brand's taxonomy classifies its posts and its flag_rules flag them.\n"
            "Intermediate JSONL files are kept under $MOMENTS_HOME/runs/ so nothing is lost\n"
            "if a run dies; re-running never duplicates posts or flags.\n\n"
            "example:\n  moments run --config brands.yaml --store http://127.0.0.1:9200"
        ),
        handler=_cmd_run,
        options=("store", "config"),
    )
    run.add_argument("--as-of", type=_parse_time, help="replay clock for recorded corpora (ISO 8601)")

    watch = commands.add(
        "watch",
        help="poll fast sources, re-score what changed, flag and notify (once or in a loop)",
        description=WATCH_DESCRIPTION,
        handler=_cmd_watch,
        options=("store", "config"),
    )
    watch.add_argument("--once", action="store_true", help="run one tick for every brand, then exit")
    watch.add_argument(
        "--interval", type=float, metavar="SECONDS", help="seconds between ticks (default: the config's)"
    )
    watch.add_argument("--as-of", type=_parse_time, help="replay clock for recorded sources (with --once)")
    watch.add_argument("--strict", action="store_true", help="exit 1 when the tick was partial")

    nightly = commands.add(
        "nightly",
        help="the nightly run: every source, recovery, bursts over the day, the daily report",
        description=NIGHTLY_DESCRIPTION,
        handler=_cmd_nightly,
        options=("store", "config"),
    )
    nightly.add_argument("--as-of", type=_parse_time, help="replay clock for recorded corpora (ISO 8601)")
    nightly.add_argument("--strict", action="store_true", help="exit 1 when the run was partial")

    commands.add(
        "serve",
        help="run watch and nightly on the config's schedules (Prefect serve)",
        description=SERVE_DESCRIPTION,
        handler=_cmd_serve,
        options=("store", "config"),
    )

    commands.add(
        "demo",
        help="the whole job, offline, on a bundled corpus",
        description=(
            "Serve a bundled corpus of recorded Mastodon, Reddit and App Store responses from\n"
            "a local HTTP server, crawl it with the real spiders, then classify, index into the\n"
            "embedded store ($MOMENTS_HOME, default ./var) and flag, as one Prefect flow run.\n"
            "Prints the flag queue and the per-touchpoint scorecard. Safe to re-run: counts stay\n"
            "the same and nothing is duplicated.\n\n"
            "example:\n  moments demo && moments search delay && moments flags"
        ),
        handler=_cmd_demo,
    )
