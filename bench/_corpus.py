"""Shared pieces of the flow benchmarks: texts, Mastodon-shaped statuses, a hermetic environment.

Nothing here is data: texts are read at run time from the shared datasets folder
(TweetEval sentiment, see ``../shared/datasets/tweeteval_sentiment/README.md``) when
it is there, else made from templates; every corpus is generated into a temp dir.
"""

from __future__ import annotations

import contextlib
import functools
import html
import os
import random
import resource
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

BRAND = "Bench Air"
TAG = "benchair"
HANDLE = "@benchair"
PAGE_SIZE = 40
TIMELINE = f"/api/v1/timelines/tag/{TAG}"

_COMPLAINTS = [
    "{h} flight {f} delayed {n} hours and nobody at the gate can tell us anything. Worst airline ever.",
    "{h} you lost my bag on {f}, third call today and still no answer. Furious.",
    "{h} cancelled {f} with no rebooking and no hotel, stuck at the airport with two kids",
    "{h} your app charged me twice for seat {s} and support keeps hanging up on me",
    "{h} refund for {f} still not here after {n} weeks, this is a joke",
    "{h} rude crew on {f}, shouted at an old man for asking for water",
]
_PRAISE = [
    "Thanks {h}, the crew on {f} were lovely and we landed early",
    "{h} upgraded me on {f} for my birthday, made my day!",
    "Smooth check-in with the {h} app, boarding for {f} took five minutes",
    "{h} found my bag within an hour and delivered it to the hotel, great service",
]
_NEUTRAL = [
    "{h} does {f} still leave from terminal 2?",
    "Boarding {f} with {h} now, seat {s}",
    "{h} what is the baggage allowance on {f}?",
]


def templated_texts(count: int, seed: int = 7) -> list[str]:
    """Complaint, praise and neutral posts mentioning the brand (when no dataset is at hand)."""
    rng = random.Random(seed)
    pools = [_COMPLAINTS] * 4 + [_PRAISE] * 3 + [_NEUTRAL] * 3
    out = []
    for _ in range(count):
        template = rng.choice(rng.choice(pools))
        out.append(
            template.format(
                h=HANDLE,
                f=f"BA{rng.randint(1, 999)}",
                n=rng.randint(2, 9),
                s=f"{rng.randint(1, 40)}{rng.choice('ABCDEF')}",
            )
        )
    return out


def real_texts() -> tuple[list[str], str]:
    """Every TweetEval sentiment text (train, val, test) and where they came from; ``[]`` if absent."""
    import sys

    sys.path.insert(0, str(REPO))
    from models.data import load_tweeteval, tweeteval_path

    texts: list[str] = []
    for split in ("train", "val", "test"):
        if tweeteval_path(split).is_file():
            texts += load_tweeteval(split).texts
    origin = str(tweeteval_path("train").parent)
    return texts, origin


def post_texts(count: int, source: str = "auto", seed: int = 7) -> tuple[list[str], str]:
    """``count`` post texts, each mentioning the brand; and a line saying what they are.

    ``source``: ``tweeteval`` (real tweets, cycled when ``count`` is larger), ``template``,
    or ``auto`` (TweetEval when the shared datasets are there, else templates).
    """
    pool: list[str] = []
    origin = ""
    if source in ("auto", "tweeteval"):
        pool, origin = real_texts()
        if not pool and source == "tweeteval":
            raise SystemExit(f"no TweetEval texts under {origin} (use --texts template)")
    if pool:
        rng = random.Random(seed)
        rng.shuffle(pool)
        texts = [f"{HANDLE} {pool[i % len(pool)]}" for i in range(count)]
        cycled = f", cycled {count / len(pool):.1f}x" if count > len(pool) else ""
        return texts, f"TweetEval sentiment tweets ({len(pool)} distinct{cycled}) from {origin}, prefixed {HANDLE}"
    return templated_texts(count, seed), "templated complaint/praise/neutral texts (no TweetEval found)"


def status_content(text: str) -> str:
    """A status's HTML ``content``: the text and the brand's hashtag link."""
    return (
        f'<p>{html.escape(text)} <a href="https://bench.example/tags/{TAG}" class="mention hashtag" '
        f'rel="tag">#<span>{TAG}</span></a></p>'
    )


def status(
    native_id: str,
    text: str,
    created_at: datetime,
    *,
    reblogs: int = 0,
    favourites: int = 0,
    replies: int = 0,
    followers: int = 0,
    handle: str = "traveller",
) -> dict[str, Any]:
    """A Mastodon Status as ``/api/v1/statuses/:id`` and the tag timeline return it."""
    return {
        "id": native_id,
        "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "in_reply_to_id": None,
        "sensitive": False,
        "spoiler_text": "",
        "visibility": "public",
        "language": "en",
        "uri": f"https://bench.example/users/{handle}/statuses/{native_id}",
        "url": f"https://bench.example/@{handle}/{native_id}",
        "replies_count": replies,
        "reblogs_count": reblogs,
        "favourites_count": favourites,
        "quotes_count": 0,
        "content": status_content(text),
        "reblog": None,
        "account": {
            "id": f"acct-{handle}",
            "username": handle,
            "acct": f"{handle}@bench.example",
            "display_name": handle.title(),
            "url": f"https://bench.example/@{handle}",
            "followers_count": followers,
        },
        "media_attachments": [],
        "mentions": [],
        "tags": [{"name": TAG, "url": f"https://bench.example/tags/{TAG}"}],
        "emojis": [],
        "card": None,
        "poll": None,
    }


def timeline(statuses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tag timeline, newest first, in pages of 40 linked by ``Link: rel="next"`` (as the API pages)."""
    ordered = sorted(statuses, key=lambda s: int(s["id"]), reverse=True)
    pages = [ordered[i : i + PAGE_SIZE] for i in range(0, len(ordered), PAGE_SIZE)] or [[]]
    interactions: list[dict[str, Any]] = []
    for index, page in enumerate(pages):
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if index + 1 < len(pages):
            headers["Link"] = f'<{{base_url}}{TIMELINE}?max_id={page[-1]["id"]}>; rel="next"'
        request: dict[str, Any] = {"method": "GET", "path": TIMELINE}
        if index:
            request["query"] = {"max_id": pages[index - 1][-1]["id"]}
        interactions.append({"request": request, "response": {"status": 200, "headers": headers, "json": page}})
    return interactions


def by_id(statuses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``GET /api/v1/statuses/:id`` for each status (the watch re-polls negative posts by id)."""
    return [
        {"request": {"method": "GET", "path": f"/api/v1/statuses/{s['id']}"}, "response": {"status": 200, "json": s}}
        for s in statuses
    ]


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Max RSS in MiB (``RUSAGE_CHILDREN``: the largest waited-for child, e.g. a crawl process)."""
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


@dataclass
class Environment:
    """A temp MOMENTS_HOME and PREFECT_HOME, and the store URL to use."""

    root: Path
    home: Path
    store_url: str
    es_prefix: str | None

    def describe(self) -> str:
        if self.es_prefix:
            return f"Elasticsearch {self.store_url} (index prefix {self.es_prefix}, dropped at exit)"
        return f"embedded SQLite {self.store_url}"


@contextlib.contextmanager
def hermetic(store: str | None, *, prefix: str = "moments-bench-", keep: bool = False) -> Iterator[Environment]:
    """Point Moments and Prefect at a temp dir (set before Prefect is imported) and clean up after.

    Prefect gets its own PREFECT_HOME (an ephemeral API server with a fresh database),
    no PREFECT_API_URL and no profile, as ``moments watch``/``nightly`` would set it up.
    Elasticsearch gets a unique index prefix whose indices are deleted at the end.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    home = root / "home"
    home.mkdir()
    saved = dict(os.environ)
    os.environ["MOMENTS_HOME"] = str(home)
    os.environ["PREFECT_HOME"] = str(root / "prefect")
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE", "MOMENTS_STORE", "MOMENTS_CONFIG", "MOMENTS_AS_OF"):
        os.environ.pop(name, None)
    es_prefix = None
    if store and store.startswith(("http://", "https://")):
        es_prefix = f"moments-bench-{uuid.uuid4().hex[:8]}"
        os.environ["MOMENTS_ES_PREFIX"] = es_prefix
        url = store
    else:
        url = store or str(home / "moments.db")
    try:
        yield Environment(root, home, url, es_prefix)
    finally:
        if es_prefix:
            _drop_indices(url, es_prefix)
        os.environ.clear()
        os.environ.update(saved)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def elasticsearch_url(given: str | None) -> Iterator[str]:
    """``given``, or a fresh single-node server from ``search.devserver``, stopped at the end."""
    if given:
        yield given.rstrip("/")
        return
    from search import devserver

    server = devserver.start()
    try:
        yield server.url
    finally:
        devserver.stop(server)


def _drop_indices(url: str, prefix: str) -> None:
    try:
        from search.migration import drop_prefix

        drop_prefix(url, prefix)
    except Exception as exc:  # a benchmark's clean-up must not hide its figures
        print(f"warning: could not delete indices {prefix}-*: {exc}")


def start_prefect() -> float:
    """Start Prefect's ephemeral API server now (seconds taken), so flow timings leave it out."""
    from prefect.client.orchestration import get_client

    started = time.perf_counter()
    with get_client(sync_client=True) as client:
        client.hello()
    return time.perf_counter() - started


def fmt_rate(count: int, seconds: float) -> str:
    """``count`` per hour over ``seconds``, as a right-aligned figure."""
    if seconds <= 0 or count <= 0:
        return f"{'-':>12}"
    return f"{count / seconds * 3600:12,.0f}"


class Stages:
    """Seconds per stage, summed over the calls the flow makes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1

        return timed


class TimedTask:
    """A Prefect task called through a timer; ``with_options`` keeps the timer."""

    def __init__(self, task: Any, name: str, stages: Stages) -> None:
        self.task, self.name, self.stages = task, name, stages

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.stages.wrap(self.name, self.task)(*args, **kwargs)

    def with_options(self, **options: Any) -> TimedTask:
        return TimedTask(self.task.with_options(**options), self.name, self.stages)
