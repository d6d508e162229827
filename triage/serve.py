"""``moments triage``: serve the triage web app (the care team's queue and the JSON API) with uvicorn."""

from __future__ import annotations

import argparse

from moments.cli import Commands

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

examples:
  moments triage                                   # http://127.0.0.1:8000
  moments triage --host 0.0.0.0 --port 8080 --store http://127.0.0.1:9200 --config brands.yaml

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

    app = create_app(args.store, args.config)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False)
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
