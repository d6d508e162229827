"""``moments crawl``: the crawler's command-line entry point."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from moments.cli import Commands
from moments.config import SOURCES, ConfigError
from moments.errors import UsageError

DESCRIPTION = """\
Crawl public posts or reviews from one source and write them as JSON Lines
(one Moments Post per line) to -o FILE or stdout. A stats line (requests,
posts, drops by reason, errors, health) goes to stderr.

SOURCE and what --query means for it:
  mastodon    a hashtag                    bluesky     search terms
  reddit      search terms, or r/NAME      hackernews  search terms (stories and comments)
  lemmy       search terms                 appstore    an app id (with --country)
  jsonld      a page URL/path or sitemap   rss         a feed URL/path
  import      a JSONL or CSV file (column mapping under `import:` in --config)

--base-url is the service root (the public service by default); point it at a
local server (python -m crawlers.mockserver DIR) to crawl recorded responses.

Re-runs are incremental: a cursor per source + query is kept under
$MOMENTS_HOME/crawl-state (./var by default), so a re-run writes only new posts
plus posts from the last 72 hours, re-polled with a new engagement snapshot.

--ids FILE re-polls known posts instead of searching (mastodon, bluesky,
reddit, hackernews, lemmy): FILE holds one native id a line (Post.native_id;
a whole Post.id "SOURCE:ID" works too; "-" reads stdin; blank lines and #
comments are skipped). Each post is fetched by id (mastodon /api/v1/statuses/ID,
bluesky getPosts 25 at a time, reddit /api/info 100 at a time, hackernews
/api/v1/items/ID, lemmy /api/v3/post|comment?id=N) and written in full with
its current engagement and one more engagement_history snapshot per --as-of
(re-running the same --as-of adds none). --query is optional with --ids: given,
the snapshots go into that search's state (its cursor never moves); without
it they are kept apart. Posts fetched by id are never dropped as already seen
or for not matching a brand (no match: brand []); a post that is gone (deleted,
404, missing from a batch answer) is counted as drop "gone", not an error.
Mastodon and Bluesky posts that were reshared also get Post.reshares: who
reshared them (mastodon reblogged_by, bluesky getRepostedBy + getProfiles, at
most 3 pages a post) with their follower counts and the first poll that saw
them; a listing that fails only logs a warning.

Without --config every post returned is kept with brand = [QUERY]; with a
brands.yaml only posts matching a brand are kept (see crawlers/brands.example.yaml).
"""

EPILOG = """\
examples:
  moments crawl mastodon --query northwindair --base-url https://mastodon.social -o posts.jsonl
  moments crawl reddit --query '"northwind air" lost bag' --since 2026-11-01T00:00:00Z
  moments crawl appstore --query 1234567890 --country gb -o reviews.jsonl
  moments crawl rss --query https://blog.example.com/feed.xml --config brands.yaml
  moments crawl import --query export.csv --config brands.yaml -o imported.jsonl
  moments crawl mastodon --query northwindair --base-url http://127.0.0.1:8765 \\
      --as-of 2026-11-20T12:00:00Z     # replay a recorded corpus reproducibly
  moments crawl reddit --ids ids.txt --query '"northwind air"' -o repolled.jsonl
      # ids.txt: t3_1abc01 and t3_1abc03 on two lines; re-poll their engagement

exit status: 0 ok; 1 source unhealthy (unreachable, or output fell to zero);
2 bad arguments or config.
"""


def register(commands: Commands) -> None:
    """Add ``crawl`` to the ``moments`` command line."""
    parser = commands.add(
        "crawl",
        help="crawl public posts or reviews from one source into JSONL",
        description=DESCRIPTION,
        epilog=EPILOG,
        handler=run_crawl,
        options=("config",),
    )
    parser.add_argument("source", choices=SOURCES, metavar="SOURCE", help=f"one of: {', '.join(SOURCES)}")
    parser.add_argument("--query", help="what to ask the source (see above); optional with --ids")
    parser.add_argument(
        "--ids",
        metavar="FILE",
        help="re-poll these posts by id instead of searching: one native id a line ('-' for stdin); "
        "mastodon and bluesky also list who reshared each post (Post.reshares)",
    )
    parser.add_argument("--base-url", help="service root URL (default: the public service)")
    parser.add_argument("-o", "--output", type=Path, help="JSONL file to write (default: stdout)")
    parser.add_argument("--since", help="only posts created at or after this ISO 8601 time")
    parser.add_argument("--as-of", help="replay clock for crawled_at (ISO 8601; default $MOMENTS_AS_OF or now)")
    parser.add_argument("--country", default="us", help="App Store storefront country code (default: us)")
    parser.add_argument("--state-dir", type=Path, help="cursor/health directory (default: $MOMENTS_HOME/crawl-state)")
    parser.add_argument("--stats-json", type=Path, help="also write the run's stats as JSON to this file")
    parser.add_argument(
        "--fast", action="store_true", help="no politeness delays (local servers only; same as MOMENTS_CRAWL_FAST=1)"
    )


def read_ids(name: str) -> list[str]:
    """The lines of an ``--ids`` file (``-``: stdin).

    Raises:
        UsageError: The file cannot be read.
    """
    if name == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(name).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"--ids: no such file: {name}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--ids: cannot read {name}: {exc}") from None


def run_crawl(args: argparse.Namespace) -> int:
    """Handler of ``moments crawl``."""
    from crawlers.runner import crawl

    ids = read_ids(args.ids) if args.ids is not None else None
    if ids is None and not args.query:
        raise UsageError("--query is required (unless --ids is given)")
    settings = {"MOMENTS_CRAWL_FAST": True} if args.fast else None
    try:
        stats = crawl(
            args.source,
            args.query or "",
            ids=ids,
            base_url=args.base_url,
            output=args.output,
            config=args.config,
            since=args.since,
            as_of=args.as_of,
            country=args.country,
            state_dir=args.state_dir,
            settings=settings,
        )
    except ConfigError:
        raise
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(stats.summary(), file=sys.stderr)
    if args.stats_json:
        args.stats_json.write_text(json.dumps(stats.to_dict(), indent=1), encoding="utf-8")
    return 0 if stats.healthy else 1
