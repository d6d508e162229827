"""The nightly flow end to end on this machine: posts/hour per stage, and peak memory.

Generates a Mastodon-shaped corpus of ``--posts`` statuses (created over the 24 h
before a fixed clock, 40 a page, linked by ``Link: rel="next"`` headers), serves it
from :mod:`crawlers.mockserver` in a child process, and runs the real ``nightly``
Prefect flow (``flows.flows.nightly``) over it once, as ``moments nightly`` would:
Prefect's ephemeral API server in a temp PREFECT_HOME, a temp MOMENTS_HOME, the
embedded SQLite store (or ``--store URL`` for Elasticsearch). That is the whole
nightly path: crawl (the real spider in a ``moments crawl`` child process, HTTP to
the local server, every item pipeline) -> prepare (merge with the store, classify
with the shipped model) -> index -> re-score every post and detect bursts hour by
hour over the day (velocity baselines rebuilt) -> notify -> daily report.

Post texts are real tweets (TweetEval sentiment, read at run time from
../shared/datasets, prefixed with the brand's handle) when present, else templated
complaint/praise texts; engagement is heavy-tailed (most posts a handful of
interactions, 2% hundreds to thousands).

How stages are timed: the flow runs unchanged, but the functions it calls are
wrapped in timers (the wrappers call the real tasks/functions with the same
arguments): ``crawl`` = the crawl task (including its child process start),
``prepare`` = the prepare task (store merge + classification + writing the file),
``classify`` = the ``models.classify_posts`` part of prepare (the model's forward
passes; loading the model is shown apart), ``index`` = the index task,
``flag+bursts`` = ``flows.tasks.flag_pending`` (baselines, re-scoring, 24 hourly
burst checks), ``report`` = the daily report. Prefect's own API server start is
done before the clock starts and shown apart. Rates are posts per hour of that
stage's wall time: crawled, classified, indexed and re-scored counts from the
flow's ``TickSummary``; the whole run is indexed posts over the flow's wall time.

Peak memory: max RSS of this process (the flow, the classifier, the store writes)
and of the largest child process waited for (the crawl), from getrusage; the
corpus server runs in its own process, stopped after the figures are read.

Target to compare against: >= 100,000 posts/hour end to end. On a shared, busy
machine figures vary with the load; the command line and load average are printed.
Usage::

    .venv/bin/python bench/pipeline.py --posts 2000          # quick look (a few minutes)
    .venv/bin/python bench/pipeline.py                       # 100,000 posts (tens of minutes)
    .venv/bin/python bench/pipeline.py --store http://127.0.0.1:9200
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _corpus

REPO = _corpus.REPO
sys.path.insert(0, str(REPO))

AS_OF = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
TARGET_PER_HOUR = 100_000


# --------------------------------------------------------------------------- the corpus server (child)


def _engagement(rng: random.Random) -> tuple[int, int, int]:
    if rng.random() < 0.02:  # the few that take off
        return rng.randint(5, 100), rng.randint(50, 1500), rng.randint(50, 3000)
    return int(rng.expovariate(1 / 1.5)), int(rng.expovariate(1 / 2)), int(rng.expovariate(1 / 4))


def corpus_statuses(posts: int, texts_source: str) -> tuple[list[dict[str, Any]], str]:
    """``posts`` statuses created evenly over the 24 h before :data:`AS_OF`, newest first."""
    rng = random.Random(42)
    texts, origin = _corpus.post_texts(posts, texts_source)
    spacing = 24 * 3600 / max(posts, 1)
    statuses = []
    for n in range(posts):
        replies, reblogs, favourites = _engagement(rng)
        statuses.append(
            _corpus.status(
                str(10_000_000 + posts - n),
                texts[n],
                AS_OF - timedelta(seconds=spacing * (n + 1)),
                replies=replies,
                reblogs=reblogs,
                favourites=favourites,
                followers=int(rng.paretovariate(1.1) * 20),
                handle=f"u{rng.randrange(max(posts // 3, 1))}",
            )
        )
    return statuses, origin


def serve_corpus(posts: int, texts_source: str) -> int:
    """Child process: generate the corpus, serve it, print the base URL and a description; serve until killed."""
    from crawlers.mockserver import running_server

    statuses, origin = corpus_statuses(posts, texts_source)
    recording = {"interactions": _corpus.timeline(statuses)}
    del statuses
    with running_server(recording) as server:
        print(json.dumps({"base_url": server.base_url, "texts": origin}), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def start_server(posts: int, texts_source: str) -> tuple[subprocess.Popen[str], str, str]:
    """Start the corpus server child; its base URL and what the texts are."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--posts", str(posts), "--texts", texts_source],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line:
        server.wait()
        raise SystemExit(f"the corpus server exited ({server.returncode}) before serving")
    info = json.loads(line)
    return server, info["base_url"], info["texts"]


# --------------------------------------------------------------------------- timing the flow's stages


def instrument(stages: _corpus.Stages) -> None:
    """Put timers around what the nightly flow calls (module globals the flow looks up at call time)."""
    import flows.flows as ff
    import flows.tasks as ft
    import models

    for name, task in (("crawl", ff.crawl_source), ("prepare", ff.prepare_file), ("index", ff.index_file)):
        setattr(ff, task.fn.__name__, _corpus.TimedTask(task, name, stages))
    ff.flag_pending = stages.wrap("flag+bursts", ff.flag_pending)
    ff.notify_alerts = stages.wrap("notify", ff.notify_alerts)
    ff.daily_report = stages.wrap("report", ff.daily_report)
    ft._classifier = stages.wrap("model load", ft._classifier)
    classify_posts = models.classify_posts

    def classify_all(posts: Any, classifier: Any, *args: Any, **kwargs: Any) -> Any:
        return iter(list(classify_posts(posts, classifier, *args, **kwargs)))

    models.classify_posts = stages.wrap("classify", classify_all)


# --------------------------------------------------------------------------- main


def write_config(path: Path, base_url: str) -> None:
    path.write_text(
        f"""brands:
  - name: {_corpus.BRAND}
    names: ["{_corpus.BRAND}"]
    handles: ["{_corpus.HANDLE}"]
    keywords: ["#{_corpus.TAG}", {_corpus.TAG}]
    sources:
      - {{source: mastodon, query: {_corpus.TAG}, base_url: "{base_url}"}}
""",
        encoding="utf-8",
    )


def run(args: argparse.Namespace) -> int:
    load_before = os.getloadavg()
    server, base_url, texts = start_server(args.posts, args.texts)
    try:
        with _corpus.hermetic(args.store, prefix="moments-bench-pipeline-") as env:
            config = env.root / "brands.yaml"
            write_config(config, base_url)
            prefect_start = _corpus.start_prefect()
            import flows.flows as ff

            stages = _corpus.Stages()
            instrument(stages)
            started = time.perf_counter()
            state = ff.nightly(config, store_url=args.store, as_of=AS_OF, return_state=True)
            whole = time.perf_counter() - started
            self_rss = _corpus.peak_rss_mib(resource.RUSAGE_SELF)
            child_rss = _corpus.peak_rss_mib(resource.RUSAGE_CHILDREN)
            if state.is_failed():
                print(f"the nightly flow failed: {state.message}")
                return 1
            summary = state.result()
            db_size = None
            if env.es_prefix is None:
                db = Path(env.store_url)
                db_size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
            where = env.describe()
    finally:
        server.terminate()
        server.wait(timeout=30)

    load_after = os.getloadavg()
    print(f"parameters: --posts {args.posts} --texts {args.texts}; as_of {AS_OF.isoformat()}; store: {where}")
    print(f"corpus: {args.posts} Mastodon statuses over 24 h, {-(-args.posts // 40)} pages of 40; texts: {texts}")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"(1 min); classifier torch threads {os.environ.get('MOMENTS_THREADS', '2')} (MOMENTS_THREADS)"
    )
    print(
        f"run: {summary.crawled} crawled, {summary.classified} classified, {summary.indexed} indexed, "
        f"{summary.rescored} re-scored; flags: {summary.flags or 'none'}; {len(summary.bursts)} bursts; "
        f"{'; '.join(summary.problems) or 'complete'}"
    )
    print(f"Prefect ephemeral API server start (not in the run's time): {prefect_start:.1f} s")
    seconds = stages.seconds
    rows = [
        ("crawl", summary.crawled, seconds["crawl"], "crawl task: moments crawl child process, HTTP, pipelines"),
        ("classify", summary.classified, seconds["classify"], "models.classify_posts inside prepare"),
        ("prepare", summary.crawled, seconds["prepare"], "prepare task: store merge + classify + write"),
        ("index", summary.indexed, seconds["index"], "index task: upsert into the store"),
        ("flag+bursts", summary.rescored, seconds["flag+bursts"], "flag_pending: baselines, re-score, 24 bursts"),
        ("report", summary.indexed, seconds["report"], "daily report"),
        ("whole run", summary.indexed, whole, "nightly flow, wall clock"),
    ]
    print(f"{'stage':12s} {'posts':>8s} {'seconds':>9s} {'posts/hour':>12s}  what")
    for name, count, secs, what in rows:
        print(f"{name:12s} {count:8d} {secs:9.1f} {_corpus.fmt_rate(count, secs)}  {what}")
    print(f"{'model load':12s} {'':8s} {seconds['model load']:9.1f} {'':12s}  loading the classifier (inside prepare)")
    accounted = sum(seconds[k] for k in ("crawl", "prepare", "index", "flag+bursts", "notify", "report"))
    print(f"{'other':12s} {'':8s} {whole - accounted:9.1f} {'':12s}  Prefect flow/task bookkeeping, recovery, pruning")
    rate = summary.indexed / whole * 3600 if whole else 0.0
    verdict = "meets" if rate >= TARGET_PER_HOUR else "misses"
    print(f"end to end: {rate:,.0f} posts/hour; {verdict} the target of >= {TARGET_PER_HOUR:,} posts/hour")
    print(f"peak RSS: this process (flow, classifier, store) {self_rss:,.0f} MiB; ", end="")
    print(f"largest child (the crawl) {child_rss:,.0f} MiB")
    if db_size is not None:
        print(f"SQLite store after the run: {db_size / 2**20:,.1f} MiB ({summary.indexed} posts)")
    return 0 if not summary.partial else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=100_000, help="corpus size (default 100000)")
    parser.add_argument(
        "--texts",
        choices=("auto", "tweeteval", "template"),
        default="auto",
        help="post texts: real TweetEval tweets, templates, or auto (TweetEval when present; default)",
    )
    parser.add_argument("--store", help="Elasticsearch URL (default: embedded SQLite in the temp MOMENTS_HOME)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve_corpus(args.posts, args.texts)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
