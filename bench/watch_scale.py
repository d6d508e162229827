"""What one watch tick costs with 10,000 and with 1,000,000 posts already stored.

For each of ``--sizes`` (default 10000,1000000), in a temp MOMENTS_HOME of its own:

1. **Fill** the store (embedded SQLite unless ``--store URL``) with generated,
   already classified Mastodon posts through ``Store.upsert`` in batches of
   ``--batch``; timed on its own and reported (posts/s, file size). ``created_at``
   is spread over the 30 days before a fixed clock; 15% are negative (most of them
   misery), over 11 touchpoints, ~10 posts per author. Texts are real tweets
   (TweetEval, read at run time from ../shared/datasets) when present, else templates.
   So that every size gives the tick the same work, the last 72 h (the watch's
   re-poll window) hold exactly ``--recent-negatives`` negative posts at every size;
   the rest of those 72 h is neutral or positive.
2. **Warm-up tick**: one real ``watch`` flow run (``force=True``, fixed ``as_of``)
   against a local Mastodon (:mod:`crawlers.mockserver`) serving ``--new`` new posts
   on the tag timeline and every recent negative post by id (engagement climbing).
   It re-polls them, classifies the new ones, and, finding no velocity baselines in
   the fresh MOMENTS_HOME, builds them from the last 7 days of the store (the
   nightly's job, so it is shown apart).
3. **Measured ticks** (``--ticks``, median reported), 10 minutes of replay clock
   apart, each with ``--new`` more new posts plus the re-polls. The flow runs
   unchanged; timers wrap what it calls (the real tasks/functions, same arguments):
   the whole tick (flow wall time), ``flows.tasks.flag_pending`` (re-score the
   pending posts + burst detection: the part that reads the store the most), and,
   for context, the crawl, re-poll-target query, prepare and index tasks.

Prints, per size: fill time, store size on disk, the tick's wall time, the
flag_pending time, posts re-scored; then the ratio big/small of both. A tick whose
cost follows the new and changed posts, not the store, gives ratios near 1.
Prefect's ephemeral API server is started (and the classifier loaded) before any
clock starts. Usage::

    .venv/bin/python bench/watch_scale.py                         # 10k and 1M (the 1M fill takes minutes)
    .venv/bin/python bench/watch_scale.py --sizes 2000,20000 --ticks 1   # quick look
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _corpus

REPO = _corpus.REPO
sys.path.insert(0, str(REPO))

AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SPAN = timedelta(days=30)
REPOLL_WINDOW = timedelta(hours=72)
TOUCHPOINTS = (
    "first_impression", "digital_experience", "purchase_booking", "price_billing", "fulfilment",
    "product_experience", "staff_interaction", "customer_support", "waiting_queues", "returns_recovery", "other",
)  # fmt: skip
#: Native ids of generated posts start here; the new posts of the ticks come after every stored one.
STORED_BASE = 100_000_000
NEW_BASE = 900_000_000


# --------------------------------------------------------------------------- the stored posts


def _classification(rng: random.Random, sentiment: str) -> dict[str, Any]:
    negative = sentiment == "negative"
    p_neg = rng.uniform(0.6, 0.98) if negative else rng.uniform(0.0, 0.3)
    rest = 1 - p_neg
    p_pos = rest * (rng.uniform(0.5, 0.95) if sentiment == "positive" else rng.uniform(0.05, 0.5))
    touchpoint = rng.choice(TOUCHPOINTS)
    moment = ("misery" if rng.random() < 0.7 else "neutral") if negative else ("magic" if p_pos > 0.5 else "neutral")
    return {
        "sentiment": sentiment,
        "sentiment_scores": {
            "negative": round(p_neg, 4),
            "neutral": round(rest - p_pos, 4),
            "positive": round(p_pos, 4),
        },
        "touchpoint": touchpoint,
        "touchpoint_scores": {touchpoint: 0.7, "other" if touchpoint != "other" else "customer_support": 0.3},
        "moment": moment,
        "severity": round(rng.uniform(0.3, 0.9) if negative else rng.uniform(0.0, 0.2), 3),
        "confidence": round(rng.uniform(0.5, 0.95), 3),
        "lang": "en",
        "model_version": "bench-synthetic",
    }


def stored_post(n: int, size: int, rng: random.Random, text: str, *, recent_negative: bool) -> Any:
    """One classified Mastodon post as the store keeps it (``n``: its index among ``size``).

    Its text is what the crawler makes of the status the local Mastodon serves for it,
    so a re-poll finds the text unchanged and keeps the stored classification.
    """
    from crawlers.text import html_to_text
    from moments.records import Post

    if recent_negative:
        created = AS_OF - timedelta(seconds=rng.uniform(60, REPOLL_WINDOW.total_seconds() - 3600))
        sentiment = "negative"
    else:
        created = AS_OF - timedelta(seconds=rng.uniform(60, SPAN.total_seconds()))
        roll = rng.random()
        sentiment = "negative" if roll < 0.15 else "positive" if roll < 0.40 else "neutral"
        if sentiment == "negative" and AS_OF - created < REPOLL_WINDOW:
            sentiment = "neutral"  # the re-poll window holds only the --recent-negatives posts
    crawled = created + timedelta(minutes=rng.uniform(1, 30))
    likes, shares, replies = int(rng.expovariate(1 / 2)), int(rng.expovariate(1 / 1)), int(rng.expovariate(1 / 1))
    native_id = str(STORED_BASE + n)
    handle = f"u{n % max(size // 10, 1)}@bench.example"
    return Post.model_validate(
        {
            "id": f"mastodon:{native_id}",
            "source": "mastodon",
            "native_id": native_id,
            "url": f"https://bench.example/@u{n}/{native_id}",
            "brand": [_corpus.BRAND],
            "author": {
                "handle": handle,
                "display_name": handle.split("@")[0],
                "followers": int(rng.paretovariate(1.1)),
            },
            "text": html_to_text(_corpus.status_content(text))[0],
            "lang": "en",
            "created_at": created,
            "crawled_at": crawled,
            "engagement": {"likes": likes, "shares": shares, "replies": replies, "quotes": 0},
            "engagement_history": [{"at": crawled, "likes": likes, "shares": shares, "replies": replies, "quotes": 0}],
            "extra": {"tags": [_corpus.TAG], "visibility": "public"},
            "classification": _classification(rng, sentiment),
        }
    )


def fill(store: Any, size: int, recent_negatives: int, texts: list[str], batch: int) -> list[Any]:
    """Upsert ``size`` posts in batches; returns the recent negative ones and their raw texts (to re-poll)."""
    rng = random.Random(size)
    # Spread the recent negatives through the fill, as they would be in a real store.
    chosen = set(random.Random(7).sample(range(size), min(recent_negatives, size)))
    recent: list[Any] = []
    started = time.perf_counter()
    pending: list[Any] = []
    for n in range(size):
        post = stored_post(n, size, rng, texts[n % len(texts)], recent_negative=n in chosen)
        if n in chosen:
            recent.append((post, texts[n % len(texts)]))
        pending.append(post)
        if len(pending) >= batch:
            store.upsert(pending)
            pending = []
            if (n + 1) % max(batch, 100_000 // batch * batch) == 0:
                done = n + 1
                elapsed = time.perf_counter() - started
                print(
                    f"  fill {size:,}: {done:,} posts in {elapsed:.0f} s ({done / elapsed:,.0f}/s)",
                    file=sys.stderr,
                    flush=True,
                )
    if pending:
        store.upsert(pending)
    return recent


# --------------------------------------------------------------------------- the local Mastodon and the ticks


def mastodon_recording(recent: list[Any], new_texts: list[str], tick: int, new: int) -> dict[str, Any]:
    """The timeline with every new post published up to ``tick`` (``new`` a tick), and each post by id."""
    rng = random.Random(tick)
    fresh = []
    for k in range((tick + 1) * new):
        published_in = k // new
        created = AS_OF + timedelta(minutes=10 * published_in, seconds=(k % new) * 240 / new)
        fresh.append(
            _corpus.status(
                str(NEW_BASE + k),
                new_texts[k % len(new_texts)],
                created,
                favourites=(tick - published_in) * rng.randint(0, 20),
                reblogs=(tick - published_in) * rng.randint(0, 5),
                handle=f"new{k}",
            )
        )
    again = []
    for i, (post, raw) in enumerate(recent):
        gained = (tick + 1) * (i % 7)  # some climb, some do not
        again.append(
            _corpus.status(
                post.native_id,
                raw,
                post.created_at,
                favourites=(post.engagement.likes or 0) + gained,
                reblogs=post.engagement.shares or 0,
                replies=post.engagement.replies or 0,
                followers=post.author.followers or 0,
                handle=(post.author.handle or "x").split("@")[0],
            )
        )
    return {"interactions": _corpus.timeline(fresh) + _corpus.by_id(fresh + again)}


def config_text(base_url: str) -> str:
    return f"""brands:
  - name: {_corpus.BRAND}
    names: ["{_corpus.BRAND}"]
    handles: ["{_corpus.HANDLE}"]
    keywords: ["#{_corpus.TAG}", {_corpus.TAG}]
    sources:
      - {{source: mastodon, query: {_corpus.TAG}, base_url: "{base_url}"}}
"""


def instrument(stages: _corpus.Stages) -> None:
    """Timers around what the watch flow calls (module globals it looks up at call time)."""
    import flows.flows as ff

    for name, task in (
        ("crawl", ff.crawl_source),
        ("repoll-targets", ff.repoll_targets),
        ("prepare", ff.prepare_file),
        ("index", ff.index_file),
    ):
        setattr(ff, task.fn.__name__, _corpus.TimedTask(task, name, stages))
    ff.flag_pending = stages.wrap("flag_pending", ff.flag_pending)


def tick(config: Path, store_url: str, at: datetime, stages: _corpus.Stages) -> tuple[float, dict[str, float], Any]:
    """One real watch flow run; its wall time, the stage times and its TickSummary."""
    import flows.flows as ff

    before = dict(stages.seconds)
    started = time.perf_counter()
    state = ff.watch(config, store_url=store_url, as_of=at, force=True, return_state=True)
    wall = time.perf_counter() - started
    if state.is_failed():
        raise SystemExit(f"the watch tick failed: {state.message}")
    summary = state.result()
    if summary.partial:
        print(f"  warning: tick at {at:%H:%M} was partial: {'; '.join(summary.problems)}", file=sys.stderr)
    spent = {k: v - before.get(k, 0.0) for k, v in stages.seconds.items()}
    return wall, spent, summary


def db_bytes(store_url: str) -> int | None:
    if store_url.startswith(("http://", "https://")):
        return None
    db = Path(store_url)
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


def measure(
    size: int, args: argparse.Namespace, env: _corpus.Environment, texts: list[str], stages: _corpus.Stages
) -> dict[str, Any]:
    from crawlers.mockserver import running_server
    from search import open_store

    home = env.root / f"home-{size}"
    home.mkdir()
    os.environ["MOMENTS_HOME"] = str(home)
    if env.es_prefix:
        os.environ["MOMENTS_ES_PREFIX"] = f"{env.es_prefix}-s{size}"
        store_url = env.store_url
    else:
        store_url = str(home / "moments.db")
    started = time.perf_counter()
    with open_store(store_url) as store:
        recent = fill(store, size, args.recent_negatives, texts, args.batch)
        stored = store.count()
    fill_seconds = time.perf_counter() - started
    print(f"  fill {size:,}: done, {stored:,} posts in {fill_seconds:.0f} s", file=sys.stderr, flush=True)

    new_texts = _corpus.templated_texts(args.new * (args.ticks + 1), seed=11)  # the same at every size
    ticks = []
    with running_server(mastodon_recording(recent, new_texts, 0, args.new)) as server:
        config = home / "brands.yaml"
        config.write_text(config_text(server.base_url), encoding="utf-8")
        warm_wall, warm_spent, warm = tick(config, store_url, AS_OF + timedelta(minutes=5), stages)
        for k in range(1, args.ticks + 1):
            server.replace(mastodon_recording(recent, new_texts, k, args.new))
            ticks.append(tick(config, store_url, AS_OF + timedelta(minutes=5 + 10 * k), stages))
    return {
        "size": size,
        "stored": stored,
        "fill": fill_seconds,
        "db": db_bytes(store_url),
        "warm": (warm_wall, warm_spent, warm),
        "ticks": ticks,
    }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def run(args: argparse.Namespace) -> int:
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    load_before = os.getloadavg()
    texts, origin = _corpus.post_texts(min(max(sizes), 200_000), args.texts)
    results = []
    with _corpus.hermetic(args.store, prefix="moments-bench-scale-") as env:
        prefect_start = _corpus.start_prefect()
        import flows.tasks

        loading = time.perf_counter()
        flows.tasks._classifier(None)  # once per process: no tick pays for it
        model_load = time.perf_counter() - loading
        stages = _corpus.Stages()
        instrument(stages)
        for size in sizes:
            results.append(measure(size, args, env, texts, stages))
        where = env.describe() if env.es_prefix else f"embedded SQLite, {env.root}/home-<size>/moments.db"

    print(
        f"parameters: --sizes {args.sizes} --new {args.new} --recent-negatives {args.recent_negatives} "
        f"--ticks {args.ticks} --batch {args.batch} --texts {args.texts}; as_of {AS_OF.isoformat()}; store: {where}"
    )
    print(f"stored texts: {origin}")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end "
        f"(1 min); Prefect API server start {prefect_start:.1f} s and classifier load {model_load:.1f} s, not in ticks"
    )
    for r in results:
        db = f", {r['db'] / 2**20:,.0f} MiB on disk (SQLite file + WAL)" if r["db"] is not None else ""
        print(f"fill {r['size']:>9,}: {r['fill']:7.1f} s, {r['stored'] / r['fill']:,.0f} posts/s{db}")
    for r in results:
        wall, spent, summary = r["warm"]
        print(
            f"warm-up tick {r['size']:>9,}: {wall:5.1f} s (flag_pending {spent.get('flag_pending', 0):.1f} s, "
            f"builds the 7-day velocity baselines); {summary.crawled} crawled ({summary.repolled} re-polled), "
            f"{summary.classified} classified, {summary.reused} reused, {summary.rescored} re-scored"
        )
    columns = ("crawl", "repoll-targets", "prepare", "index", "flag_pending")
    print(
        f"measured ticks (median of {args.ticks}), seconds:\n"
        f"{'stored':>10s} {'tick':>6s} "
        + " ".join(f"{c:>14s}" for c in columns)
        + f" {'crawled':>8s} {'re-scored':>9s}"
    )
    medians: dict[int, dict[str, float]] = {}
    for r in results:
        walls = [t[0] for t in r["ticks"]]
        per = {c: _median([t[1].get(c, 0.0) for t in r["ticks"]]) for c in columns}
        per["tick"] = _median(walls)
        medians[r["size"]] = per
        last = r["ticks"][-1][2]
        print(
            f"{r['size']:>10,} {per['tick']:6.1f} "
            + " ".join(f"{per[c]:14.2f}" for c in columns)
            + f" {last.crawled:>8d} {last.rescored:>9d}"
        )
        for _, _, s in r["ticks"]:
            print(f"    {s.line()[:200]}")
    if len(results) >= 2:
        small, big = medians[sizes[0]], medians[sizes[-1]]
        print(
            f"ratio {sizes[-1]:,} / {sizes[0]:,} stored: tick {big['tick'] / small['tick']:.2f}, "
            f"flag_pending (re-score + bursts) {big['flag_pending'] / max(small['flag_pending'], 1e-9):.2f}, "
            f"store-facing tasks (re-poll query + prepare + index + flag_pending) "
            f"{sum(big[c] for c in columns[1:]) / max(sum(small[c] for c in columns[1:]), 1e-9):.2f}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", default="10000,1000000", help="posts stored before the ticks (default 10000,1000000)"
    )
    parser.add_argument("--new", type=int, default=20, help="new posts on the timeline per tick (default 20)")
    parser.add_argument(
        "--recent-negatives",
        type=int,
        default=100,
        help="negative posts in the 72 h re-poll window, re-polled by id each tick (default 100)",
    )
    parser.add_argument("--ticks", type=int, default=3, help="measured ticks per size (median shown; default 3)")
    parser.add_argument(
        "--batch", type=int, default=5000, help="posts per Store.upsert call in the fill (default 5000)"
    )
    parser.add_argument(
        "--texts",
        choices=("auto", "tweeteval", "template"),
        default="auto",
        help="stored post texts: TweetEval tweets, templates, or auto (TweetEval when present; default)",
    )
    parser.add_argument("--store", help="Elasticsearch URL (default: embedded SQLite in a temp MOMENTS_HOME per size)")
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
