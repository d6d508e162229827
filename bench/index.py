"""Indexing throughput and query latency: our indexer against a bare ``helpers.bulk``, Elasticsearch and SQLite.

Generates ``--posts`` classified posts (default 200,000) deterministically, then:

1. **Elasticsearch, our indexer**: ``ElasticStore.upsert(posts)`` into a fresh
   index (the store's own defaults: ``streaming_bulk`` in batches of 500, no refresh
   per batch and one refresh at the end, 429 retries, dead letters, and one
   engagement-snapshot document per snapshot into the monthly snapshot index).
   Figure: docs/s = posts / wall time.
2. **Elasticsearch, bare bulk**: ``elasticsearch.helpers.bulk`` of the same posts into
   another fresh index with the same mapping and shard/replica settings, chunks of
   500, no refresh per chunk and one refresh at the end, like the store. Each
   action's body is built lazily from the same ``Post`` with the same
   ``post.model_dump(mode="json")`` the store sends, so both sides pay for
   serialisation, and the same snapshot documents into monthly snapshot indices;
   what differs is the store's own machinery.
3. **SQLite, our indexer**: ``SqliteStore.upsert(posts)`` into a temp file.

``ratio`` = ours / bare bulk (aim: >= 0.8).

Then latency, each query run ``--runs`` times (after 3 warm-up runs) on both
stores, p50 and p95 in milliseconds (aim: p95 < 200 ms on 2 cores):

* ``search``: ``store.search('refund touchpoint:fulfilment sentiment:negative',
  brand=<busiest brand>, limit=20)``: a filtered full-text query;
* ``agg <name>``: ``store.aggregate(name, brand=..., since=<30 days before the
  last post>, until=<the last post>)`` for each name in
  ``search.aggregations.AGGREGATIONS`` (the scorecard's aggregations); shown as
  "n/a (not built)" while the store has no ``aggregate``.

The corpus: created_at spread over the 60 days before a fixed clock; 5 brands,
6 sources, 5 languages (80% English: real tweets from the shared TweetEval
dataset when present, else templates; the rest short templated posts in French,
German, Spanish and Dutch), 11 touchpoints, sentiments 15% negative / 25%
positive, moments from them, heavy-tailed engagement, about 8 posts per author;
4 in 10 negative posts carry a touchpoint-specific complaint ("... still waiting
for my refund").

Elasticsearch is a fresh single node started with ``search.devserver`` (and
stopped at the end) unless ``--es-url`` names one; the bench's indices get a
unique prefix and are deleted at the end. On a shared, busy machine figures vary
with the load; the load average is printed. Usage::

    .venv/bin/python bench/index.py --posts 20000            # quick look (a few minutes)
    .venv/bin/python bench/index.py                          # 200,000 posts
    .venv/bin/python bench/index.py --es-url http://127.0.0.1:9200 --json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _corpus
from pipeline import _engagement
from watch_scale import _classification

REPO = _corpus.REPO
sys.path.insert(0, str(REPO))

AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SPAN = timedelta(days=60)
BATCH = 500
SEARCH_QUERY = "refund touchpoint:fulfilment sentiment:negative"
TARGET_RATIO = 0.8
TARGET_P95_MS = 200.0

BRANDS = [  # (name, handle, weight)
    ("Northwind Air", "@northwindair", 5),
    ("Contoso Rail", "@contosorail", 3),
    ("Fabrikam Mobile", "@fabrikam", 3),
    ("Tailspin Foods", "@tailspinfoods", 2),
    ("Litware Bank", "@litwarebank", 1),
]
SOURCES = [("mastodon", 4), ("reddit", 2), ("bluesky", 2), ("trustpilot", 1), ("youtube", 1), ("appstore", 1)]
LANGS = [("en", 80), ("fr", 7), ("de", 6), ("es", 4), ("nl", 3)]
COMPLAINTS = {
    "fulfilment": ["parcel never arrived, still waiting for my refund", "delivery lost twice, refund please"],
    "price_billing": ["charged twice and no refund in sight", "hidden fees on my bill, I want a refund"],
    "returns_recovery": ["returned it a month ago and the refund is still pending", "they refused my refund"],
    "customer_support": ["support hung up on me three times", "no answer from support for a week"],
    "waiting_queues": ["two hours in the queue", "the line did not move for an hour"],
    "digital_experience": ["the app crashes at checkout", "login broken again after the update"],
    "staff_interaction": ["rude staff at the counter", "the agent laughed at my question"],
}
FOREIGN = {
    "fr": ["{h} colis jamais arrivé, toujours pas de remboursement", "{h} service client injoignable", "{h} merci!"],
    "de": ["{h} Paket nie angekommen, keine Rückerstattung", "{h} Lieferung verspätet", "{h} super Service, danke"],
    "es": ["{h} el paquete nunca llegó, quiero un reembolso", "{h} atención pésima", "{h} gracias por todo"],
    "nl": ["{h} pakket nooit aangekomen, geen terugbetaling", "{h} klantenservice onbereikbaar", "{h} top service"],
}


def _weighted(rng: random.Random, choices: list[tuple[str, int]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def generate_posts(count: int, seed: int = 11) -> tuple[list[Any], str]:
    """``count`` classified posts (deterministic for a seed) and a line saying where the texts came from."""
    from moments.records import Post, post_id

    rng = random.Random(seed)
    english, origin = _corpus.real_texts()
    if english:
        random.Random(seed).shuffle(english)
        origin = f"TweetEval sentiment tweets ({len(english):,} distinct) from {origin}"
    else:
        english = _corpus.templated_texts(min(count, 5000), seed)
        origin = "templated complaint/praise/neutral texts (no TweetEval found)"
    authors = max(count // 8, 1)
    brand_weights = [(name, weight) for name, _, weight in BRANDS]
    handles = {name: handle for name, handle, _ in BRANDS}
    posts = []
    for n in range(count):
        source = _weighted(rng, SOURCES)
        brands = [_weighted(rng, brand_weights)]
        if rng.random() < 0.05:  # a post naming two brands is counted for both
            brands = sorted({*brands, _weighted(rng, brand_weights)})
        lang = _weighted(rng, LANGS)
        roll = rng.random()
        sentiment = "negative" if roll < 0.15 else "positive" if roll < 0.40 else "neutral"
        classification = _classification(rng, sentiment)
        classification["lang"] = lang
        handle = handles[brands[0]]
        if lang == "en":
            text = f"{handle} {english[n % len(english)].replace(_corpus.HANDLE, handle)}"
        else:
            text = rng.choice(FOREIGN[lang]).format(h=handle)
        complaints = COMPLAINTS.get(classification["touchpoint"])
        if sentiment == "negative" and complaints and rng.random() < 0.4:
            text = f"{text} {rng.choice(complaints)}"
        created = AS_OF - timedelta(seconds=rng.uniform(60, SPAN.total_seconds()))
        crawled = created + timedelta(minutes=rng.uniform(1, 120))
        replies, shares, likes = _engagement(rng)
        author = f"u{rng.randrange(authors)}"
        native_id = str(500_000_000 + n)
        counters = {"likes": likes, "shares": shares, "replies": replies, "quotes": 0}
        posts.append(
            Post.model_validate(
                {
                    "id": post_id(source, native_id),
                    "source": source,
                    "native_id": native_id,
                    "url": f"https://{source}.example/{author}/{native_id}",
                    "brand": brands,
                    "author": {
                        "handle": f"{author}@{source}.example",
                        "display_name": author.upper(),
                        "followers": int(rng.paretovariate(1.1) * 20),
                    },
                    "text": text,
                    "title": f"Review of {brands[0]}" if source in ("trustpilot", "appstore", "youtube") else None,
                    "lang": lang,
                    "created_at": created,
                    "crawled_at": crawled,
                    "engagement": counters,
                    "engagement_history": [{"at": crawled, **counters}],
                    "classification": classification,
                }
            )
        )
    return posts, origin


# --------------------------------------------------------------------------- measuring


def progress(enabled: bool) -> Any:
    """A rich progress bar on stderr, or a no-op when not on a terminal / under CI / with --json."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )


def counted(posts: Iterable[Any], tick: Callable[[int], None]) -> Iterator[Any]:
    """``posts`` as they are consumed, advancing the progress bar every batch (cheap: once per 500)."""
    done = 0
    for post in posts:
        yield post
        done += 1
        if done % BATCH == 0:
            tick(BATCH)
    tick(done % BATCH)


def rate(count: int, seconds: float) -> dict[str, float]:
    return {"docs": count, "seconds": round(seconds, 3), "docs_per_s": round(count / seconds, 1) if seconds else 0.0}


def latency(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    """p50 and p95 in ms of ``runs`` calls of ``fn`` (after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    p95 = statistics.quantiles(times, n=20, method="inclusive")[18] if len(times) > 1 else times[0]
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(p95, 2), "runs": runs}


def aggregation_names() -> list[str] | None:
    """The scorecard's aggregation names, or ``None`` before ``search.aggregations`` exists."""
    try:
        module = importlib.import_module("search.aggregations")
    except ImportError:
        return None
    names = getattr(module, "AGGREGATIONS", None)
    return [str(name) for name in names] if names is not None else None


def query_latencies(store: Any, brand: str, runs: int, bar: Any) -> dict[str, dict[str, float] | None]:
    """The filtered search and every scorecard aggregation (``None``: the store has no ``aggregate`` yet)."""
    results: dict[str, dict[str, float] | None] = {}
    names = aggregation_names() or []
    aggregate = getattr(store, "aggregate", None)
    task = bar.add_task(f"latency {type(store).__name__}", total=1 + len(names))
    search = latency(lambda: store.search(SEARCH_QUERY, brand=brand, limit=20), runs)
    search["matches"] = store.count_posts(SEARCH_QUERY, brand=brand)
    results["search"] = search
    bar.advance(task)
    since, until = AS_OF - timedelta(days=30), AS_OF
    if aggregate is None or not names:
        results["agg"] = None
    for name in names:
        if aggregate is not None:
            run_once = functools.partial(aggregate, name, brand=brand, since=since, until=until)
            results[f"agg {name}"] = latency(run_once, runs)
        bar.advance(task)
    bar.remove_task(task)
    return results


def bare_bulk(client: Any, index: str, posts: list[Any], bar: Any, label: str) -> dict[str, float]:
    """``helpers.bulk`` of ``posts`` into ``index`` and one refresh, bodies built as the store builds them."""
    from elasticsearch import helpers

    from search.mapping import StoredSnapshot, snapshot_id, snapshot_index

    def documents(post: Any) -> Any:
        # The same documents the store writes: the post, then each engagement snapshot into
        # its monthly snapshot index (the store's own "-snapshots-YYYY.MM" naming).
        yield {"_index": index, "_id": post.id, "_source": post.model_dump(mode="json")}
        for snap in post.engagement_history:
            stored = StoredSnapshot(**snap.model_dump(), post_id=post.id, source=post.source, brand=post.brand)
            yield {
                "_index": snapshot_index(index, snap.at),
                "_id": snapshot_id(post.id, snap.at),
                "_source": stored.model_dump(mode="json"),
            }

    task = bar.add_task(label, total=len(posts))
    actions = (doc for post in counted(posts, lambda k: bar.advance(task, k)) for doc in documents(post))
    started = time.perf_counter()
    expected = sum(1 + len(post.engagement_history) for post in posts)
    # Requests of the same size as the store's: BATCH posts with their snapshot documents.
    chunk = max(BATCH, round(BATCH * expected / max(len(posts), 1)))
    ok, errors = helpers.bulk(client.options(request_timeout=120), actions, chunk_size=chunk)
    # The store refreshes once at the end of an upsert: same work.
    client.indices.refresh(index=f"{index},{index}-snapshots-*", ignore_unavailable=True, allow_no_indices=True)
    seconds = time.perf_counter() - started
    bar.remove_task(task)
    if errors or ok != expected:
        raise SystemExit(f"bare bulk into {index} wrote {ok} of {expected} documents: {errors}")
    return rate(len(posts), seconds)  # posts per second, like ours (each with its snapshot documents)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import uuid

    from elasticsearch import Elasticsearch

    from search.elastic import ElasticStore
    from search.mapping import es_mapping, index_templates
    from search.sqlite import SqliteStore

    show = not args.json and sys.stderr.isatty() and not _corpus_in_ci()
    started = time.perf_counter()
    posts, origin = generate_posts(args.posts)
    generated_s = time.perf_counter() - started
    brand = Counter(b for post in posts for b in post.brand).most_common(1)[0][0]
    result: dict[str, Any] = {
        "posts": args.posts,
        "texts": origin,
        "generate_seconds": round(generated_s, 1),
        "brand": brand,
        "search_query": SEARCH_QUERY,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    with (
        _corpus.elasticsearch_url(args.es_url) as url,
        # A temp MOMENTS_HOME (the spool, the SQLite file); the Elasticsearch indices get a prefix of their own.
        _corpus.hermetic(None, prefix="moments-bench-index-") as env,
        contextlib.ExitStack() as stack,  # innermost: its deletes run while the server is still up
    ):
        prefix = f"moments-bench-{uuid.uuid4().hex[:8]}"
        result["elasticsearch"] = {"url": url, "index_prefix": prefix}
        with progress(show) as bar:
            # -- Elasticsearch: our indexer
            store = ElasticStore(url, index_prefix=prefix, timeout=120)
            # Every index and template of the prefix (posts, flags, app, snapshot months), by name.
            stack.callback(_drop_prefix, url, prefix)
            with store:
                task = bar.add_task("elasticsearch: our upsert", total=len(posts))
                t0 = time.perf_counter()
                written = store.upsert(counted(posts, lambda k: bar.advance(task, k)))
                ours = rate(written.written, time.perf_counter() - t0)
                bar.remove_task(task)
                if written.spooled:
                    raise SystemExit(f"{written.spooled} posts were spooled: Elasticsearch at {url} is struggling")
                es_count = store.count()
                live = store._client.indices.get_settings(index=store.index)[store.index]["settings"]["index"]
                shape = {"number_of_shards": live["number_of_shards"], "number_of_replicas": live["number_of_replicas"]}
                es_latency = query_latencies(store, brand, args.runs, bar)
            # -- Elasticsearch: bare helpers.bulk into fresh indices with the same mapping and shape
            client = Elasticsearch(url, request_timeout=120)
            bare: dict[str, float] = {}
            try:
                index = f"{prefix}-bare"
                stack.callback(_delete_indices, url, [index])
                client.indices.create(index=index, mappings=es_mapping(), settings=shape)
                # Its snapshot documents get the store's snapshot mapping, through the same template.
                snapshots = index_templates(index, shape)[f"{index}-snapshots"]
                client.indices.put_index_template(name=f"{index}-snapshots", **snapshots)
                bare = bare_bulk(client, index, posts, bar, "elasticsearch: bare bulk")
                counted_bare = int(client.count(index=index)["count"])
                if counted_bare != len(posts):
                    raise SystemExit(f"bare bulk index {index} holds {counted_bare} of {len(posts)} posts")
                client.indices.delete(index=index)
            finally:
                client.close()
            result["elasticsearch"].update(
                {
                    "index_settings": shape,
                    "ours": ours,
                    "bare_bulk": bare,
                    "ratio": round(ours["docs_per_s"] / bare["docs_per_s"], 3),
                    "count": es_count,
                    "latency": es_latency,
                }
            )
            # -- SQLite: our indexer
            db = env.home / "moments.db"
            with SqliteStore(db) as sqlite_store:
                task = bar.add_task("sqlite: our upsert", total=len(posts))
                t0 = time.perf_counter()
                written = sqlite_store.upsert(counted(posts, lambda k: bar.advance(task, k)))
                sqlite_rate = rate(written.written, time.perf_counter() - t0)
                bar.remove_task(task)
                result["sqlite"] = {
                    "path": "temp dir (deleted at exit)",
                    "ours": sqlite_rate,
                    "count": sqlite_store.count(),
                    "file_mib": round(db.stat().st_size / 2**20, 1),
                    "latency": query_latencies(sqlite_store, brand, args.runs, bar),
                }
    return result


def _drop_prefix(url: str, prefix: str) -> None:
    from search.migration import drop_prefix

    try:
        drop_prefix(url, prefix)
    except Exception as exc:  # a benchmark's clean-up must not hide its figures
        print(f"warning: could not delete the indices of {prefix}: {exc}", file=sys.stderr)


def _delete_indices(url: str, indices: list[str]) -> None:
    from elasticsearch import Elasticsearch

    try:
        with Elasticsearch(url, request_timeout=60) as client:
            client.indices.delete(index=",".join(indices), ignore_unavailable=True)
    except Exception as exc:  # clean-up must not hide the figures
        print(f"warning: could not delete indices {', '.join(indices)}: {exc}", file=sys.stderr)


def _corpus_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _fmt_latency(figures: dict[str, float] | None) -> str:
    if figures is None:
        return "n/a (not built)"
    mark = "" if figures["p95_ms"] <= TARGET_P95_MS else f"  (over the {TARGET_P95_MS:.0f} ms aim)"
    matches = f"   ({figures['matches']:,.0f} matching posts)" if "matches" in figures else ""
    return f"p50 {figures['p50_ms']:8.1f} ms   p95 {figures['p95_ms']:8.1f} ms{matches}{mark}"


def print_report(result: dict[str, Any], command: str) -> None:
    es, lite = result["elasticsearch"], result["sqlite"]
    print(f"command: {command}")
    print(f"load average at start: {', '.join(map(str, result['load_average']))}; {os.cpu_count()} CPUs")
    print(f"corpus: {result['posts']:,} posts, generated in {result['generate_seconds']} s; texts: {result['texts']}")
    print(f"elasticsearch: {es['url']} ({es['index_settings']}); sqlite: {lite['path']}, {lite['file_mib']} MiB")
    print()
    print("indexing (docs/s, higher is better)")
    rows = [
        ("elasticsearch: our upsert", es["ours"]),
        ("elasticsearch: bare helpers.bulk", es["bare_bulk"]),
        ("sqlite: our upsert", lite["ours"]),
    ]
    for label, figures in rows:
        took = f"({figures['docs']:,} in {figures['seconds']:.1f} s)"
        print(f"  {label:<38} {figures['docs_per_s']:>10,.0f} docs/s  {took}")
    verdict = "meets" if es["ratio"] >= TARGET_RATIO else "below"
    print(f"  ratio ours / bare bulk                  {es['ratio']:>10.2f}  ({verdict} the {TARGET_RATIO} aim)")
    print(f"  stored: elasticsearch {es['count']:,}, sqlite {lite['count']:,}")
    print()
    print(f"latency, brand {result['brand']!r}; search = {result['search_query']!r}, limit 20")
    for name in dict.fromkeys([*es["latency"], *lite["latency"]]):
        for store, figures in (("elasticsearch", es["latency"].get(name)), ("sqlite", lite["latency"].get(name))):
            label = "scorecard aggregations" if name == "agg" else name
            print(f"  {label:<28} {store:<14} {_fmt_latency(figures)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/index.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=200_000, help="posts to generate and index (default 200,000)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per query for p50/p95 (default 30)")
    parser.add_argument(
        "--es-url", help="an Elasticsearch to use (default: start a fresh one with search.devserver, stopped after)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object (no progress bar)")
    args = parser.parse_args(argv)
    if args.posts < 1 or args.runs < 2:
        parser.error("--posts must be at least 1 and --runs at least 2")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
