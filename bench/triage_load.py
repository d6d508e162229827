"""Load on the triage app: N simulated care agents on loopback against a store of many flags.

For each store (the embedded SQLite store, then Elasticsearch) the bench:

1. seeds a fresh store (a temp ``MOMENTS_HOME``; on Elasticsearch a unique index
   prefix, dropped at the end) with ``--flags`` posts in one bulk ``upsert`` and one
   flag per post through ``Store.create_flag`` (what the flagging rule calls), spread
   over 5 brands, 6 touchpoints, 4 sources, 3 languages and P1 to P4, opened over the
   last 90 minutes, mostly ``open``; the SLA targets they missed already (about one
   flag in five: P1s, older P2s) recorded as breach events, as the scheduled
   ``moments triage breaches`` would have done; plus ``--agents`` users of role
   ``agent``, each with an API token;
2. starts the real app, ``moments triage --store ...``, in its own process (uvicorn,
   one worker, access log on as deployed, built-in SLA defaults) on a free loopback
   port; asks for the queue once before the clock starts;
3. runs ``--agents`` agents for ``--duration`` seconds, each an ``httpx.AsyncClient``
   with its own connection and ``Authorization: Bearer`` token, in a loop:

   * ``GET /api/flags``: the queue, with a random filter (none, a brand, a touchpoint,
     ``status=open``, their own assignments, a source or a language);
   * ``GET /api/flags/{id}``: one of the top 10 flags of that queue (as a person picks
     near the top, so agents collide);
   * ``POST /api/flags/{id}/actions``: the next step for its status, with the version
     just read as ``if_version``: take an open flag, acknowledge it, respond with a
     playbook template, resolve; now and then a note or a dismissal. A 409 (another
     agent changed it first, or its status no longer allows the step) is the
     compare-and-set working: counted as ``conflicts``, not as an error.

   Between requests an agent waits a random 0 to 2 x ``--think`` seconds (default
   0.5: a busy agent; ``--think 0`` is a closed loop, the server saturated).

Printed per store and endpoint: requests, requests per second, p50/p95/p99 latency
(measured by the client, from sending to the whole body read), status codes; per store
the total rate, conflicts and errors (5xx, transport errors, any other 4xx). The aim
is p95 under 200 ms on 2 cores. The load generator shares the machine with the
server, so on 2 cores it takes part of the CPU the server would have; on a shared,
busy machine figures vary with the load (the load average is printed).

Elasticsearch is a fresh single node from ``search.devserver`` (stopped at the end)
unless ``--es-url`` names one; ``--stores sqlite`` skips it. Usage::

    .venv/bin/python bench/triage_load.py                                  # 50 agents, 10,000 flags, both stores
    .venv/bin/python bench/triage_load.py --stores sqlite --duration 10    # a quick look
    .venv/bin/python bench/triage_load.py --es-url http://127.0.0.1:9200 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _corpus

REPO = _corpus.REPO
sys.path.insert(0, str(REPO))

TARGET_P95_MS = 200.0
BRANDS = ["northwind", "contoso", "fabrikam", "tailspin", "wingtip"]
TOUCHPOINTS = ["purchase_booking", "fulfilment", "customer_support", "price_billing", "digital_experience", "other"]
SOURCES = ["mastodon", "reddit", "bluesky", "rss"]
LANGS = ["en", "en", "en", "fr", "de"]
PRIORITIES = ["P1", "P2", "P2", "P3", "P3", "P3", "P4", "P4"]
#: Seeded statuses: mostly open, some already in hand or closed.
STATUSES = ["open"] * 14 + ["acknowledged"] * 3 + ["responded"] * 2 + ["resolved"]
ENDPOINTS = ("GET /api/flags", "GET /api/flags/{id}", "POST /api/flags/{id}/actions")
#: How many of the queue's first flags an agent picks from.
TOP = 10


# ------------------------------------------------------------------------------ seeding


def seed(store: Any, flags: int, agents: int, rng: random.Random) -> list[str]:
    """``flags`` posts and flags and ``agents`` agent users into ``store``; the agents' API tokens."""
    from moments.accounts import User
    from moments.config import MomentsConfig
    from moments.records import Flag, Post, post_flag_id, post_id, utc_now
    from triage.accounts import hash_password, new_token
    from triage.service_levels import effective_slas, record_breaches_for

    now = utc_now()
    posts: list[Post] = []
    for n in range(flags):
        source = SOURCES[n % len(SOURCES)]
        native = f"b{n:06d}"
        created = now - timedelta(minutes=rng.uniform(3, 92))
        touchpoint = TOUCHPOINTS[n % len(TOUCHPOINTS)]
        posts.append(
            Post.model_validate(
                {
                    "id": post_id(source, native),
                    "source": source,
                    "native_id": native,
                    "url": f"https://social.example/@user{n % 997}/{native}",
                    "brand": [BRANDS[n % len(BRANDS)]],
                    "author": {"handle": f"@user{n % 997}", "display_name": f"User {n % 997}", "followers": n % 5000},
                    "text": f"order {n} never arrived and support does not answer, third time asking",
                    "lang": LANGS[n % len(LANGS)],
                    "created_at": created,
                    "crawled_at": created + timedelta(minutes=1),
                    "engagement": {"likes": n % 90, "shares": n % 13, "replies": n % 7},
                    "classification": {
                        "sentiment": "negative",
                        "sentiment_scores": {"negative": 0.9, "neutral": 0.08, "positive": 0.02},
                        "touchpoint": touchpoint,
                        "touchpoint_scores": {touchpoint: 0.8},
                        "moment": "misery",
                        "severity": 0.7,
                        "confidence": 0.9,
                        "model_version": "bench-1",
                    },
                }
            )
        )
    store.upsert(posts)

    def flag_of(post: Post) -> Flag:
        status = rng.choice(STATUSES)
        opened = (post.created_at or now) + timedelta(minutes=2)
        return Flag.model_validate(
            {
                "id": post_flag_id(post.id),
                "brand": post.brand[0],
                "touchpoint": post.classification.touchpoint if post.classification else None,
                "post_ids": [post.id],
                "priority": rng.choice(PRIORITIES),
                "score": round(rng.uniform(0.1, 10), 3),
                "reasons": ["negative and spreading"],
                "status": status,
                "first_response_at": opened + timedelta(minutes=5) if status in ("responded", "resolved") else None,
                "resolved_at": opened + timedelta(minutes=30) if status == "resolved" else None,
                "opened_at": opened,
                "updated_at": opened,
            }
        )

    records = [flag_of(post) for post in posts]
    # Concurrent creates: on Elasticsearch each one waits for its write to be searchable.
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda f: store.create_flag(f, actor="rule:bench", at=f.opened_at), records))
        # The breaches so far, as `moments triage breaches` on a schedule records them (the app
        # records those it finds when it serves the queue; this keeps that out of the timings).
        slas = effective_slas(store, MomentsConfig())
        chunks = [records[i : i + 100] for i in range(0, len(records), 100)]
        list(pool.map(lambda chunk: record_breaches_for(store, chunk, slas, now), chunks))
    password_hash = hash_password("bench password, never used to log in")
    tokens = []
    for n in range(agents):
        user = User(name=f"agent{n:03d}", role="agent", password_hash=password_hash, created_at=now)
        store.put_user(user)
        tokens.append(new_token(store, user).token)
    return tokens


# ------------------------------------------------------------------------------ the app


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def app_process(store_url: str, workdir: Path, workers: int = 1) -> Iterator[str]:
    """``moments triage --store STORE --workers N`` on a free loopback port, as deployed; its URL. Stopped at the end.

    It runs in ``workdir`` (no ``brands.yaml`` there: the built-in SLAs, as the seeding used).
    """
    import httpx

    port = free_port()
    command = [
        sys.executable,
        "-c",
        "import sys; from moments.cli import main; sys.exit(main())",
        "triage",
        "--store",
        store_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    log = workdir / "app.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the triage app exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/openapi.json", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"the triage app did not answer at {url} within 120 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ------------------------------------------------------------------------------ the agents


@dataclass
class Tally:
    """What the agents saw: latencies (ms) and status codes per endpoint, and failures."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {e: [] for e in ENDPOINTS})
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: {e: Counter() for e in ENDPOINTS})
    transport_errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def record(self, endpoint: str, started: float, response: Any) -> None:
        self.latencies[endpoint].append((time.perf_counter() - started) * 1000)
        self.statuses[endpoint][response.status_code] += 1
        unexpected = response.status_code >= 500 or (response.status_code >= 400 and response.status_code != 409)
        if unexpected and len(self.examples) < 5:
            self.examples.append(f"{endpoint} -> {response.status_code}: {response.text[:200]}")


def next_action(detail: dict[str, Any], me: str, rng: random.Random) -> dict[str, Any]:
    """What an agent does next with a flag it has open, by its status (always something the status allows)."""
    flag = detail["flag"]
    version = flag["version"]
    roll = rng.random()
    if roll < 0.08:
        return {"action": "note", "text": "customer contacted by DM", "if_version": version}
    if flag["status"] in ("resolved", "dismissed"):
        return {"action": "note", "text": "checked again: still fine", "if_version": version}
    if roll < 0.12:
        return {"action": "dismiss", "reason": "not negative", "if_version": version}
    if flag["assignee"] is None:
        return {"action": "assign", "assignee": me, "if_version": version}
    if flag["status"] == "open":
        return {"action": "acknowledge", "if_version": version}
    if flag["status"] == "acknowledged":
        touchpoint = flag["touchpoint"] or "other"
        return {"action": "respond", "template_id": f"{touchpoint}.apologise.1", "if_version": version}
    return {"action": "resolve", "text": "sorted", "if_version": version}


def queue_params(me: str, rng: random.Random) -> dict[str, str]:
    choice = rng.randrange(7)
    return [
        {},
        {"brand": rng.choice(BRANDS)},
        {"touchpoint": rng.choice(TOUCHPOINTS)},
        {"status": "open"},
        {"assignee": me},
        {"source": rng.choice(SOURCES)},
        {"lang": rng.choice(LANGS)},
    ][choice]


async def agent(url: str, token: str, me: str, until: float, think: float, tally: Tally, seed: int) -> None:
    """One care agent's loop: the queue, a flag near its top, an action on it; until ``until``."""
    import httpx

    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:

        async def call(endpoint: str, method: str, path: str, **kwargs: Any) -> Any:
            if think:
                await asyncio.sleep(rng.uniform(0, 2 * think))
            if time.perf_counter() >= until:
                return None
            started = time.perf_counter()
            try:
                response = await client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                tally.transport_errors[type(exc).__name__] += 1
                return None
            tally.record(endpoint, started, response)
            return response

        while time.perf_counter() < until:
            queue = await call("GET /api/flags", "GET", "/api/flags", params=queue_params(me, rng))
            if queue is None or queue.status_code != 200:
                continue
            entries = queue.json()["entries"][:TOP]
            if not entries:
                continue
            flag_id = rng.choice(entries)["flag"]["id"]
            detail = await call("GET /api/flags/{id}", "GET", f"/api/flags/{flag_id}")
            if detail is None or detail.status_code != 200:
                continue
            body = next_action(detail.json(), me, rng)
            await call("POST /api/flags/{id}/actions", "POST", f"/api/flags/{flag_id}/actions", json=body)


async def run_agents(url: str, tokens: list[str], duration: float, think: float, seed: int) -> tuple[Tally, float]:
    tally = Tally()
    started = time.perf_counter()
    until = started + duration
    await asyncio.gather(
        *(agent(url, token, f"agent{n:03d}", until, think, tally, seed + n) for n, token in enumerate(tokens))
    )
    return tally, time.perf_counter() - started


# ------------------------------------------------------------------------------ figures


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_ms:
        return 0.0
    rank = max(1, min(len(sorted_ms), round(q / 100 * len(sorted_ms) + 0.5)))
    return sorted_ms[rank - 1]


def figures(tally: Tally, seconds: float) -> dict[str, Any]:
    endpoints: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        values = sorted(tally.latencies[endpoint])
        endpoints[endpoint] = {
            "requests": len(values),
            "requests_per_s": round(len(values) / seconds, 1),
            "p50_ms": round(percentile(values, 50), 1),
            "p95_ms": round(percentile(values, 95), 1),
            "p99_ms": round(percentile(values, 99), 1),
            "max_ms": round(values[-1], 1) if values else 0.0,
            "statuses": {str(code): n for code, n in sorted(tally.statuses[endpoint].items())},
        }
    codes = Counter[int]()
    for counter in tally.statuses.values():
        codes.update(counter)
    server_errors = sum(n for code, n in codes.items() if code >= 500)
    client_errors = sum(n for code, n in codes.items() if 400 <= code < 500 and code != 409)
    transport = sum(tally.transport_errors.values())
    total = sum(codes.values())
    return {
        "seconds": round(seconds, 1),
        "requests": total,
        "requests_per_s": round(total / seconds, 1),
        "endpoints": endpoints,
        "conflicts": codes.get(409, 0),
        "server_errors": server_errors,
        "errors": server_errors + client_errors + transport,
        "transport_errors": dict(tally.transport_errors),
        "error_examples": tally.examples,
    }


# ------------------------------------------------------------------------------ runs


def run_store(kind: str, es_url: str | None, args: argparse.Namespace, say: Any) -> dict[str, Any]:
    """Seed a fresh store of ``kind``, start the app on it, run the agents; the figures."""
    from search.backends import open_store

    with _corpus.hermetic(es_url, prefix="moments-bench-triage-") as env:
        rng = random.Random(args.seed)
        say(f"{kind}: seeding {args.flags:,} flags and {args.agents} agents ...")
        started = time.perf_counter()
        if kind == "elasticsearch":
            from search.elastic import ElasticStore

            # Seeding only: forced refreshes, so concurrent creates do not each wait up to a second.
            store: Any = ElasticStore(env.store_url, refresh=True, timeout=60)
        else:
            store = open_store(env.store_url)
        with store:
            tokens = seed(store, args.flags, args.agents, rng)
            stored = store.count_flags(status=None)
        seed_s = time.perf_counter() - started
        say(f"{kind}: seeded in {seed_s:.1f} s; starting the app")
        with app_process(env.store_url, env.root, args.workers) as url:
            import httpx

            warm = httpx.get(f"{url}/api/flags", headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=300)
            if warm.status_code != 200:
                raise SystemExit(f"{kind}: the queue answered {warm.status_code}: {warm.text[:300]}")
            say(f"{kind}: {args.agents} agents for {args.duration:.0f} s ...")
            tally, seconds = asyncio.run(run_agents(url, tokens, args.duration, args.think, args.seed))
        result = figures(tally, seconds)
        result.update({"store": env.describe(), "flags": stored, "seed_seconds": round(seed_s, 1)})
        return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr, flush=True))
    result: dict[str, Any] = {
        "agents": args.agents,
        "workers": args.workers,
        "flags": args.flags,
        "duration_s": args.duration,
        "think_s": args.think,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "stores": {},
    }
    if "sqlite" in args.stores:
        result["stores"]["sqlite"] = run_store("sqlite", None, args, say)
    if "elasticsearch" in args.stores:
        with _corpus.elasticsearch_url(args.es_url) as url:
            result["stores"]["elasticsearch"] = run_store("elasticsearch", url, args, say)
    return result


def print_report(result: dict[str, Any], command: str) -> None:
    print(f"command: {command}")
    print(
        f"{result['agents']} agents, {result['flags']:,} flags, {result['duration_s']:.0f} s per store, think time "
        f"0-{2 * result['think_s']:g} s; {result['cpus']} CPUs, load average at start "
        f"{', '.join(map(str, result['load_average']))}"
    )
    for name, store in result["stores"].items():
        print()
        print(f"{name}: {store['store']}; {store['flags']:,} flags seeded in {store['seed_seconds']} s")
        print(f"  {'endpoint':<30} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  statuses")
        for endpoint, row in store["endpoints"].items():
            mark = "" if row["p95_ms"] <= TARGET_P95_MS else f"  (p95 over the {TARGET_P95_MS:.0f} ms aim)"
            codes = " ".join(f"{code}:{n}" for code, n in row["statuses"].items())
            print(
                f"  {endpoint:<30} {row['requests']:>8} {row['requests_per_s']:>7.1f} {row['p50_ms']:>8.1f} "
                f"{row['p95_ms']:>8.1f} {row['p99_ms']:>8.1f}  {codes}{mark}"
            )
        print(
            f"  total: {store['requests']} requests in {store['seconds']} s = {store['requests_per_s']} req/s; "
            f"conflicts (409) {store['conflicts']}; errors {store['errors']} (5xx {store['server_errors']})"
        )
        for example in store["error_examples"]:
            print(f"    e.g. {example}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/triage_load.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=50, help="concurrent simulated agents (default 50)")
    parser.add_argument("--flags", type=int, default=10_000, help="flags (and posts) to seed (default 10,000)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per store (default 30)")
    parser.add_argument(
        "--think", type=float, default=0.5, help="mean seconds an agent waits between requests (default 0.5; 0: none)"
    )
    parser.add_argument(
        "--stores",
        default="sqlite,elasticsearch",
        help="comma-separated: sqlite, elasticsearch (default both)",
    )
    parser.add_argument(
        "--es-url", help="an Elasticsearch to use (default: start a fresh one with search.devserver, stopped after)"
    )
    parser.add_argument("--workers", type=int, default=1, help="app processes (moments triage --workers; default 1)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the corpus and the agents (default 7)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(args.stores) - {"sqlite", "elasticsearch"}
    if unknown or not args.stores:
        parser.error(f"--stores takes sqlite and/or elasticsearch, not {', '.join(sorted(unknown)) or 'nothing'}")
    if args.agents < 1 or args.flags < 1 or args.duration <= 0 or args.think < 0:
        parser.error("--agents and --flags must be at least 1, --duration above 0 and --think at least 0")
    from search.devserver import DevServerError
    from search.store import StoreError

    try:
        result = run(args)
    except (StoreError, DevServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result, " ".join([Path(sys.executable).name, *sys.argv]))
    return 1 if any(s["server_errors"] for s in result["stores"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
