"""Crawler throughput: the Moments pipeline against a bare Scrapy spider.

Generates a Mastodon-shaped corpus of ``--posts`` statuses (40 a page,
linked by ``Link: rel="next"`` headers, as the real API pages) into a temp
dir, serves it with :mod:`crawlers.mockserver`, and crawls it twice, each in
its own process, with politeness delays off:

* ``moments``: ``crawlers.runner.crawl`` (the real spider, cleaning, language
  detection, validation into ``Post``, brand, duplicate and incremental
  pipelines, JSONL output);
* ``bare``: a plain ``scrapy.Spider`` that only parses each page's JSON and
  yields the dicts (no pipelines, no output).

Prints items/s (wall clock), items per CPU-second of the crawling process,
peak memory (max RSS of each crawling process) and the ratio moments/bare of
both; on a shared, busy machine the CPU-time ratio is the steadier one. Usage::

    .venv/bin/python bench/crawl.py                 # 20,000 posts
    .venv/bin/python bench/crawl.py --posts 50000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAGE_SIZE = 40
TAG = "benchair"
PATH = f"/api/v1/timelines/tag/{TAG}"
AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

_TOPIC = [
    "flight", "delayed", "lost", "bag", "crew", "seat", "upgrade", "refund", "gate", "boarding", "lounge",
    "cancelled", "connection", "missed", "thanks", "queue", "app", "check-in", "luggage", "pilot", "staff",
    "voucher", "hotel", "airport", "security", "meal", "window", "aisle",
]  # fmt: skip


def _vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    """Pseudo-words plus airline terms: real posts do not share a 30-word vocabulary."""
    letters = "etaoinshrdlcumwfgypbvk"
    made = {"".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(size)}
    return _TOPIC + sorted(made)


def _words(rng: random.Random, vocabulary: list[str], count: int) -> str:
    # Zipf-like: a few words are very common, most are rare, as in real text.
    size = len(vocabulary)
    return " ".join(vocabulary[int(size ** rng.random()) - 1] for _ in range(count))


def _status(n: int, rng: random.Random, vocabulary: list[str]) -> dict[str, Any]:
    words = _words(rng, vocabulary, rng.randint(8, 40))
    created = AS_OF - timedelta(seconds=30 * n)
    return {
        "id": str(10_000_000 + 100_000 - n),
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "in_reply_to_id": None,
        "sensitive": False,
        "spoiler_text": "",
        "visibility": "public",
        "language": "en" if n % 3 else None,
        "uri": f"https://bench.example/users/u{n % 500}/statuses/{n}",
        "url": f"https://bench.example/@u{n % 500}/{n}",
        "replies_count": rng.randint(0, 50),
        "reblogs_count": rng.randint(0, 200),
        "favourites_count": rng.randint(0, 500),
        "quotes_count": rng.randint(0, 5),
        "content": f'<p>{words} <a href="https://bench.example/tags/{TAG}" class="mention hashtag" rel="tag">'
        f"#<span>{TAG}</span></a> &amp; more</p>",
        "reblog": None,
        "account": {
            "id": str(n % 500),
            "username": f"u{n % 500}",
            "acct": f"u{n % 500}@bench.example",
            "display_name": f"User {n % 500}",
            "url": f"https://bench.example/@u{n % 500}",
            "followers_count": rng.randint(0, 10_000),
        },
        "media_attachments": [],
        "mentions": [],
        "tags": [{"name": TAG, "url": f"https://bench.example/tags/{TAG}"}],
        "emojis": [],
        "card": None,
        "poll": None,
    }


def generate(directory: Path, posts: int) -> None:
    """Write the corpus as one recording file: ``posts / 40`` linked timeline pages."""
    rng = random.Random(42)
    vocabulary = _vocabulary(rng)
    rng.shuffle(vocabulary)
    statuses = [_status(n, rng, vocabulary) for n in range(posts)]
    interactions = []
    pages = [statuses[i : i + PAGE_SIZE] for i in range(0, posts, PAGE_SIZE)]
    for index, page in enumerate(pages):
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if index + 1 < len(pages):
            headers["Link"] = f'<{{base_url}}{PATH}?max_id={page[-1]["id"]}>; rel="next"'
        request: dict[str, Any] = {"method": "GET", "path": PATH}
        if index:
            request["query"] = {"max_id": pages[index - 1][-1]["id"]}
        interactions.append({"request": request, "response": {"status": 200, "headers": headers, "json": page}})
    (directory / "corpus.json").write_text(json.dumps({"interactions": interactions}), encoding="utf-8")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_moments(base_url: str, workdir: Path) -> dict[str, Any]:
    """Run the real Moments crawl (in this child process)."""
    # Import up front, as the bare child does: the clock measures crawling, not imports.
    import scrapy.crawler  # noqa: F401

    import crawlers.pipelines
    import crawlers.spiders.mastodon  # noqa: F401
    from crawlers.runner import crawl

    started, cpu_started = time.perf_counter(), time.process_time()
    stats = crawl(
        "mastodon",
        TAG,
        base_url=base_url,
        output=workdir / "out.jsonl",
        as_of=AS_OF,
        state_dir=workdir / "state",
        settings={"MOMENTS_CRAWL_FAST": True},
    )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "items": stats.items,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "requests": stats.requests,
        "peak_rss_mb": _peak_rss_mb(),
    }


def child_bare(base_url: str) -> dict[str, Any]:
    """Run a bare Scrapy spider that only yields the parsed JSON (in this child process)."""
    import scrapy
    from scrapy.crawler import CrawlerProcess

    count = {"items": 0}

    class BareSpider(scrapy.Spider):
        name = "bare"

        async def start(self) -> Any:
            yield scrapy.Request(f"{base_url}{PATH}?limit={PAGE_SIZE}")

        def parse(self, response: Any) -> Any:
            # Same request order as the Moments spider: next page first, then the items.
            link = response.headers.get("Link")
            if link:
                yield scrapy.Request(link.decode().split(">", 1)[0].lstrip("<"))
            for status in json.loads(response.body):
                count["items"] += 1
                yield status

    process = CrawlerProcess(
        {
            "LOG_LEVEL": "WARNING",
            "TELNETCONSOLE_ENABLED": False,
            "DOWNLOAD_DELAY": 0,
            "AUTOTHROTTLE_ENABLED": False,
            "ROBOTSTXT_OBEY": False,
        }
    )
    process.crawl(BareSpider)
    started, cpu_started = time.perf_counter(), time.process_time()
    process.start()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"items": count["items"], "seconds": elapsed, "cpu_seconds": cpu, "peak_rss_mb": _peak_rss_mb()}


def run_child(kind: str, base_url: str, workdir: Path) -> dict[str, Any]:
    """One measured crawl in a fresh process (a Twisted reactor runs once per process)."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--base-url", base_url, "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=20_000, help="corpus size (default 20000)")
    parser.add_argument("--repeat", type=int, default=1, help="crawls per variant; the median is reported")
    parser.add_argument("--child", choices=("moments", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = child_moments(args.base_url, args.workdir) if args.child == "moments" else child_bare(args.base_url)
        print(json.dumps(result))
        return 0

    from crawlers.mockserver import serve_recordings

    with tempfile.TemporaryDirectory(prefix="moments-bench-") as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        corpus.mkdir()
        generate(corpus, args.posts)
        print(
            f"corpus: {args.posts} posts in {-(-args.posts // PAGE_SIZE)} pages of {PAGE_SIZE} (Mastodon tag timeline)"
        )
        results: dict[str, list[dict[str, Any]]] = {"moments": [], "bare": []}
        with serve_recordings(corpus) as base_url:
            for n in range(args.repeat):
                for kind in ("bare", "moments"):
                    workdir = root / f"{kind}-{n}"
                    workdir.mkdir()
                    results[kind].append(run_child(kind, base_url, workdir))
    rates, cpu_rates = {}, {}
    for kind in ("moments", "bare"):
        runs = results[kind]
        rate = statistics.median(r["items"] / r["seconds"] for r in runs)
        cpu_rate = statistics.median(r["items"] / r["cpu_seconds"] for r in runs)
        peak = max(r["peak_rss_mb"] for r in runs)
        items = runs[0]["items"]
        rates[kind], cpu_rates[kind] = rate, cpu_rate
        print(f"{kind:8s} {items:6d} items  {rate:9.0f} items/s  {cpu_rate:9.0f} items/CPU-s  peak RSS {peak:6.1f} MiB")
        if items != args.posts:
            print(f"  warning: expected {args.posts} items, got {items}")
    print(f"ratio moments/bare: {rates['moments'] / rates['bare']:.2f}")
    # CPU time of each crawling process: steadier than wall time on a shared, busy machine.
    print(f"ratio moments/bare (CPU time): {cpu_rates['moments'] / cpu_rates['bare']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
