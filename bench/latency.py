"""Detection latency of ``moments watch``: from a complaint crossing the velocity bar to the flag and the webhook.

Starts ``moments watch --config F --interval S`` as a subprocess (its own process
group, a temp MOMENTS_HOME and PREFECT_HOME, the embedded SQLite store unless
``--store URL``), against a local Mastodon (:mod:`crawlers.mockserver`, whose
answers this script changes while it runs) and a local webhook receiver
(``http.server``) configured as a signed webhook channel with ``min_priority: P4``.
The brand's ``watch_interval`` is S, so every tick polls it.

After the first tick has completed, each trial waits a random part of an interval
(so the crossing falls at a different point of the tick cycle), publishes a new
negative post (no engagement), then raises its engagement every ``--step`` seconds:
``--steps-below`` steps stay under ``flag_rules.min_velocity`` (a young post's
velocity is its interactions over half an hour), then one step crosses it; that
moment is recorded. The engagement keeps climbing after that. It then measures the
seconds from the crossing to

* (a) the flag ``post:mastodon:<id>`` being in the store (polled every 0.5 s with
  ``search.open_store(...).get_flag``), and
* (b) the webhook receiving the flag's first message (its HMAC signature checked),

and compares them with the target "one watch interval + 30 s". Each trial is
printed, then the medians. The watch process group is killed at the end, whatever
happens. Usage::

    .venv/bin/python bench/latency.py                      # --interval 30 --trials 3
    .venv/bin/python bench/latency.py --interval 60 --trials 5 --store http://127.0.0.1:9200
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _corpus

REPO = _corpus.REPO
sys.path.insert(0, str(REPO))

SECRET = "bench-latency-secret"
TICK_LINE = re.compile(r"^watch \d{4}-\d\d-\d\d \d\d:\d\dZ:")
COMPLAINTS = [
    "{h} you lost my bag on BA{n}, nobody answers the phone, worst airline ever. Furious.",
    "{h} flight BA{n} cancelled at the gate, no rebooking, no apology, absolutely disgusted",
    "{h} third day waiting for my refund for BA{n}, your support keeps hanging up on me. Terrible.",
    "{h} charged twice for my seat on BA{n} and the app just errors out. Awful service, never again.",
    "{h} four hours on the tarmac on BA{n} with no water and no information. Shameful.",
]
BACKGROUND = [
    "Thanks {h}, the crew on BA{n} were lovely and we landed early",
    "{h} does BA{n} still leave from terminal 2?",
    "Boarding BA{n} with {h}, window seat, see you in Lisbon",
]


class Receiver:
    """A local webhook endpoint: records (monotonic time, body, signature ok) for every POST."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any], bool]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.monotonic()
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-Moments-Signature", ""), expected)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {}
                receiver.received.append((at, payload, signed))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def first_for(self, flag_id: str) -> tuple[float, bool] | None:
        for at, payload, signed in list(self.received):
            flag = payload.get("flag") if isinstance(payload, dict) else None
            if isinstance(flag, dict) and flag.get("id") == flag_id:
                return at, signed
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Watch:
    """``moments watch`` in its own process group; its output lines are kept with their times."""

    def __init__(self, command: list[str], echo: bool) -> None:
        self.lines: list[tuple[float, str, str]] = []
        self.echo = echo
        self.proc = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream: Any) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), name, line.rstrip("\n")))
            if self.echo:
                print(f"  [watch {name}] {line.rstrip()}", file=sys.stderr, flush=True)

    def ticks(self) -> list[tuple[float, str]]:
        """Completed ticks: (time the tick line appeared, the line)."""
        return [(at, line) for at, _, line in list(self.lines) if TICK_LINE.match(line)]

    def stop(self) -> None:
        """SIGINT to the group (a clean stop), then SIGKILL to whatever is left of it."""
        try:
            pgid = os.getpgid(self.proc.pid)
        except ProcessLookupError:
            return
        for sig, grace in ((signal.SIGINT, 15.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if self.proc.poll() is not None and not _group_alive(pgid):
                    return
                time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def config_text(base_url: str, webhook_url: str, interval: int, min_velocity: float) -> str:
    return f"""flag_rules:
  min_velocity: {min_velocity:g}
notifications:
  - {{kind: webhook, url: "{webhook_url}/hook", secret_env: MOMENTS_WEBHOOK_SECRET, min_priority: P4}}
brands:
  - name: {_corpus.BRAND}
    names: ["{_corpus.BRAND}"]
    handles: ["{_corpus.HANDLE}"]
    keywords: ["#{_corpus.TAG}", {_corpus.TAG}]
    watch_interval: {interval}s
    sources:
      - {{source: mastodon, query: {_corpus.TAG}, base_url: "{base_url}"}}
"""


class Timeline:
    """The statuses the local Mastodon serves (tag timeline and by id); engagement set per status."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.statuses: dict[str, dict[str, Any]] = {}

    def put(self, item: dict[str, Any]) -> None:
        self.statuses[item["id"]] = item
        values = list(self.statuses.values())
        self.server.replace({"interactions": _corpus.timeline(values) + _corpus.by_id(values)})


def wait_for(predicate: Any, timeout: float, what: str, watch: Watch) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if watch.proc.poll() is not None:
            tail = "\n".join(line for _, _, line in watch.lines[-15:])
            raise SystemExit(f"moments watch exited ({watch.proc.returncode}) while waiting for {what}:\n{tail}")
        time.sleep(0.25)
    tail = "\n".join(line for _, _, line in watch.lines[-15:])
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}; watch said:\n{tail}")


def run_trial(
    n: int,
    args: argparse.Namespace,
    rng: random.Random,
    timeline: Timeline,
    store: Any,
    receiver: Receiver,
    watch: Watch,
) -> dict[str, Any]:
    """One complaint, published, climbing past the bar; the seconds to the flag and to the webhook."""
    time.sleep(rng.uniform(0, args.interval))
    native_id = str(900_000 + n)
    flag_id = f"post:mastodon:{native_id}"
    text = COMPLAINTS[n % len(COMPLAINTS)].format(h=_corpus.HANDLE, n=100 + n)
    created = datetime.now(UTC)
    bar = math.ceil(args.min_velocity * 0.5)  # interactions over the half-hour age floor
    below = [bar * k // (args.steps_below + 1) for k in range(args.steps_below + 1)][: args.steps_below] or [0]
    plan = [*below, max(bar, 1) * 2]  # the last one crosses; it keeps climbing after
    handle = f"complainer{n}"
    requests_before = len(timeline.server.request_log)

    def publish(total: int) -> float:
        timeline.put(_corpus.status(native_id, text, created, favourites=total, followers=120, handle=handle))
        return time.monotonic()

    published = publish(plan[0])
    crossing_at = None
    next_step = published + args.step
    step = 1
    flag_at = webhook_at = None
    signed = False
    limit = args.interval * 4 + 240
    while True:
        now = time.monotonic()
        if now >= next_step:
            total = plan[step] if step < len(plan) else plan[-1] + (step - len(plan) + 1) * bar
            at = publish(total)
            if step == len(plan) - 1:
                crossing_at = at
            step += 1
            next_step += args.step
        if flag_at is None and store.get_flag(flag_id) is not None:
            flag_at = time.monotonic()
        if webhook_at is None and (found := receiver.first_for(flag_id)) is not None:
            webhook_at, signed = found
        if flag_at is not None and webhook_at is not None and crossing_at is not None:
            break
        if crossing_at is not None and now - crossing_at > limit:
            break
        if watch.proc.poll() is not None:
            raise SystemExit(f"moments watch exited ({watch.proc.returncode}) during trial {n + 1}")
        time.sleep(0.5)
    assert crossing_at is not None
    # When the local Mastodon was next asked about the post (by id, or the timeline) after the crossing.
    path = f"/api/v1/statuses/{native_id}"
    log = timeline.server.request_log[requests_before:]
    times = timeline.server.request_times[requests_before:]
    polls = [t for t, line in zip(times, log, strict=False) if t >= crossing_at and (path in line or "/tag/" in line)]
    return {
        "trial": n + 1,
        "flag_id": flag_id,
        "bar": bar,
        "plan": plan,
        "before_crossing": crossing_at - published,
        "next_poll": polls[0] - crossing_at if polls else None,
        "flag": flag_at - crossing_at if flag_at is not None else None,
        "webhook": webhook_at - crossing_at if webhook_at is not None else None,
        "signed": signed,
        "flag_before_crossing": flag_at is not None and flag_at < crossing_at,
    }


def _secs(value: float | None) -> str:
    return f"{value:6.1f} s" if value is not None else "  none  "


def run(args: argparse.Namespace) -> int:
    from crawlers.mockserver import running_server

    load_before = os.getloadavg()
    rng = random.Random(args.seed)
    receiver = Receiver()
    results: list[dict[str, Any]] = []
    started_at = time.monotonic()
    watch: Watch | None = None
    try:
        with running_server() as server, _corpus.hermetic(args.store, prefix="moments-bench-latency-") as env:
            os.environ["MOMENTS_WEBHOOK_SECRET"] = SECRET
            timeline = Timeline(server)
            now = datetime.now(UTC)
            for i, template in enumerate(BACKGROUND):
                item = _corpus.status(
                    str(800_000 + i),
                    template.format(h=_corpus.HANDLE, n=10 + i),
                    now - timedelta(minutes=20 + i),
                    favourites=3,
                    handle=f"fan{i}",
                )
                timeline.put(item)
            config = env.root / "brands.yaml"
            config.write_text(config_text(server.base_url, receiver.url, args.interval, args.min_velocity), "utf-8")
            command = [sys.executable, "-m", "moments.cli", "watch", "--config", str(config)]
            command += ["--interval", str(args.interval)]
            if args.store:
                command += ["--store", args.store]
            watch = Watch(command, args.verbose)
            wait_for(lambda: watch is not None and watch.ticks(), args.startup_timeout, "the first tick", watch)
            first_tick = watch.ticks()[0][0] - started_at
            print(f"first tick done {first_tick:.1f} s after start (Prefect API server start, model load)")
            from search import open_store

            with open_store(env.store_url) as store:
                for n in range(args.trials):
                    result = run_trial(n, args, rng, timeline, store, receiver, watch)
                    results.append(result)
                    print(
                        f"trial {result['trial']}: crossed {result['before_crossing']:.0f} s after publishing "
                        f"(total engagement {result['plan']}, bar {result['bar']}); next poll "
                        f"+{_secs(result['next_poll']).strip()}; flag stored {_secs(result['flag'])}; "
                        f"webhook {_secs(result['webhook'])} (signature {'ok' if result['signed'] else 'BAD/none'})",
                        flush=True,
                    )
            ticks = watch.ticks()
            where = env.describe()
    finally:
        if watch is not None:
            watch.stop()
        receiver.close()

    target = args.interval + 30
    periods = [b[0] - a[0] for a, b in itertools.pairwise(ticks)]
    print(
        f"parameters: --interval {args.interval} --trials {args.trials} --step {args.step} "
        f"--steps-below {args.steps_below} --min-velocity {args.min_velocity:g} --seed {args.seed}; store: {where}"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end "
        f"(1 min); {len(ticks)} ticks, median {statistics.median(periods) if periods else 0:.1f} s between tick ends"
    )
    print(f"{'trial':>5s} {'flag stored':>12s} {'webhook':>10s}  (seconds after the crossing)")
    for r in results:
        print(f"{r['trial']:5d} {_secs(r['flag']):>12s} {_secs(r['webhook']):>10s}")
    flags = [r["flag"] for r in results if r["flag"] is not None]
    hooks = [r["webhook"] for r in results if r["webhook"] is not None]
    med_flag = statistics.median(flags) if flags else None
    med_hook = statistics.median(hooks) if hooks else None
    print(f"{'median':>5s} {_secs(med_flag):>12s} {_secs(med_hook):>10s}")
    missed = len(results) - len(hooks)
    worst = max(hooks) if hooks else None
    # Every trial must make it.
    verdict = "meets" if hooks and not missed and worst is not None and worst <= target else "misses"
    print(
        f"target: one watch interval + 30 s = {target} s; webhook median {_secs(med_hook).strip()}, "
        f"worst {_secs(worst).strip()}{f', {missed} never arrived' if missed else ''}: {verdict} it"
    )
    return 0 if verdict == "meets" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=int, default=30, help="seconds between watch ticks (default 30)")
    parser.add_argument("--trials", type=int, default=3, help="complaints to time (default 3)")
    parser.add_argument("--step", type=float, default=10.0, help="seconds between engagement steps (default 10)")
    parser.add_argument("--steps-below", type=int, default=3, help="steps under the bar before it (default 3)")
    parser.add_argument(
        "--min-velocity", type=float, default=20.0, help="flag_rules.min_velocity in the config (default 20)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random wait before each trial")
    parser.add_argument(
        "--startup-timeout", type=float, default=600.0, help="seconds to wait for the first tick (default 600)"
    )
    parser.add_argument("--store", help="Elasticsearch URL (default: embedded SQLite in the temp MOMENTS_HOME)")
    parser.add_argument("-v", "--verbose", action="store_true", help="echo the watch process's output to stderr")
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
