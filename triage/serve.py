"""``moments triage``: serve the triage web app (the care team's queue and the JSON API) with uvicorn."""

from __future__ import annotations

import argparse
import os

from moments.cli import Commands

#: The statuses ``moments triage breaches`` checks by default (``search.store.ACTIVE_STATUSES``).
ACTIVE = ("open", "acknowledged", "responded")

DESCRIPTION = """\
Serve the triage app: the queue of flags by priority and SLA, each flag's posts,
chart, forecast and event log, and the actions (assign, acknowledge, respond,
resolve, dismiss, note), as pages and as a JSON API under /api (spec at /openapi.json).

Users log in with the accounts `moments users` manages; integrations use an API
token (Authorization: Bearer mts_...). Everything lives in the store (--store,
$MOMENTS_STORE, or the embedded store), so several app processes on one store agree.
SLAs and forecast rules come from brands.yaml (--config, $MOMENTS_CONFIG, or
./brands.yaml when present; built-in defaults otherwise).

Session cookies are Secure unless the app is reached on a loopback address: put it
behind TLS before serving it on any other address.

`moments triage breaches` records missed SLA targets as events (see its --help);
the app does the same whenever it serves the queue.

examples:
  moments triage                                   # http://127.0.0.1:8000
  moments triage --host 0.0.0.0 --port 8080 --store http://127.0.0.1:9200 --config brands.yaml
  moments triage --workers 4 --store http://127.0.0.1:9200   # four processes on one port
  moments triage breaches --config brands.yaml     # for a schedule, e.g. every 5 minutes

exit status: 0 stopped; 1 the store failed; 2 bad usage (an invalid config).
"""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, not {port}")
    return port


def _cmd_triage(args: argparse.Namespace) -> int:
    # Imported here: `moments --help` must not pay for FastAPI, uvicorn and the forecast model.
    import uvicorn

    from triage.app import create_app

    if args.workers == 1:
        app = create_app(args.store, args.config)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False)
        return 0
    # A bad config or an unreachable store is one clear error here, not one per worker.
    from search.backends import open_store
    from triage.app import app_config

    app_config(args.config)
    open_store(args.store).close()
    # Several processes: each builds its own app from the environment. They agree because
    # users, sessions, presence, playbooks and SLA overrides all live in the store.
    if args.store:
        os.environ["MOMENTS_STORE"] = str(args.store)
    if args.config:
        os.environ["MOMENTS_CONFIG"] = str(args.config)
    uvicorn.run(
        "triage.app:create_app",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level="info",
        server_header=False,
    )
    return 0


def _workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of workers: {text!r}") from None
    if not 1 <= workers <= 64:
        raise argparse.ArgumentTypeError(f"workers are 1 to 64, not {workers}")
    return workers


BREACHES_DESCRIPTION = """\
Record every missed SLA target as an event in its flag's log: one `sla_breached`
event per flag and target (first_response, resolution), written once however often
this runs (it reads the log first and writes with a compare-and-set on the flag's
version). Targets are the config's (--config), overlaid with those leads set in the
app. The triage app does the same for the flags it shows whenever it serves the queue;
run this on a schedule so breaches are recorded even when nobody has the queue open.

Checks active flags (open, acknowledged, responded); --all also checks closed ones, so
a flag closed late gets its resolution breach.

examples:
  moments triage breaches                          # prints one line per event written
  moments triage breaches --all --json --store http://127.0.0.1:9200

exit status: 0 done (also when nothing was late); 1 the store failed; 2 bad usage.
"""


def _cmd_breaches(args: argparse.Namespace) -> int:
    import json

    from moments.records import utc_now
    from search.backends import open_store
    from triage.app import app_config
    from triage.service_levels import record_breaches

    config = app_config(args.config)
    with open_store(args.store) as store:
        statuses = None if args.all else ACTIVE
        written = record_breaches(store, utc_now(), config=config, statuses=statuses, brand=args.brand)
    rows = [
        {"flag_id": b.flag_id, "target": b.target, "priority": b.priority, "due": b.due.isoformat()} for b in written
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['flag_id']}\t{row['priority']}\t{row['target']} breached (due {row['due']})")
        print(f"{len(rows)} breach events written")
    return 0


def register(commands: Commands) -> None:
    """Add ``triage`` (serve the web app) to ``moments``."""
    parser = commands.add(
        "triage",
        help="serve the triage web app: queue, flag pages, actions, JSON API",
        description=DESCRIPTION,
        handler=_cmd_triage,
        options=("store", "config"),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="app processes sharing the port (default: 1); state lives in the store, so they agree",
    )
    actions = commands.group(parser, dest="triage_action")
    breaches = actions.add(
        "breaches",
        help="record missed SLA targets as sla_breached events (for a schedule)",
        description=BREACHES_DESCRIPTION,
        handler=_cmd_breaches,
        options=("store", "config", "json", "brand"),
    )
    breaches.add_argument("--all", action="store_true", help="check closed flags too (default: active ones)")
