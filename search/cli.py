"""``moments index`` and ``moments search``: load classified posts into a store, and query it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from crawlers.jsonl import ReadReport, read_posts, read_posts_file
from crawlers.schema import Post
from search.store import open_store

STORE_HELP = (
    "where posts live: http(s)://host:9200 for Elasticsearch, or a SQLite file path "
    "(default: $MOMENTS_STORE, else the embedded store $MOMENTS_HOME/moments.db, ./var by default)"
)

INDEX_DESCRIPTION = """\
Index posts from a JSONL file (one Post per line, as written by `moments crawl`
or `moments classify`) into the store. Re-indexing the same file is safe: posts
are upserted by id, and a care-team flag already on a stored post is kept when
the incoming post has none. Malformed lines are reported with their line number
and skipped; every good line is indexed.

If Elasticsearch is unavailable mid-run, posts are spooled under
$MOMENTS_HOME/spool and written by the next `moments index`.

examples:
  moments index classified.jsonl
  moments index classified.jsonl --store http://127.0.0.1:9200
  moments classify posts.jsonl -o - | moments index -
"""

SEARCH_DESCRIPTION = """\
Full-text search over post text, title and author name, best match first.

Query syntax (the same on both stores): words must all match; "quoted words"
match as a phrase; word* matches a prefix; OR separates alternatives; NOT
excludes a word. Anything else is treated as plain text, so no query is ever
rejected.

examples:
  moments search delay
  moments search '"lost bag"' --brand northwind
  moments search 'refund AND late' --limit 5 --json | jq '.[].url'
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``index`` and ``search`` to the ``moments`` command line."""
    index = subparsers.add_parser(
        "index",
        help="index classified posts (JSONL) into the store",
        description=INDEX_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    index.add_argument("input", metavar="IN", help="JSONL file of posts, or - for standard input")
    index.add_argument("--store", default=None, help=STORE_HELP)
    index.set_defaults(handler=run_index)

    search = subparsers.add_parser(
        "search",
        help="full-text search the store",
        description=SEARCH_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    search.add_argument("query", metavar="QUERY", help="words to look for (quote phrases)")
    search.add_argument("--store", default=None, help=STORE_HELP)
    search.add_argument("--brand", default=None, help="only posts about this brand")
    search.add_argument("--limit", type=_positive, default=20, help="at most this many results (default: 20)")
    search.add_argument("--json", action="store_true", help="print a JSON array of full posts instead of a table")
    search.set_defaults(handler=run_search)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def run_index(args: argparse.Namespace) -> int:
    """Handler of ``moments index``: returns 0 when every post was indexed or spooled."""
    report = ReadReport()
    path = None if args.input == "-" else Path(args.input)
    if path is not None and not path.is_file():
        # Checked before opening the store, so a typo does not create an empty database.
        raise FileNotFoundError(f"no such file: {path}")
    with open_store(args.store) as store:
        if path is None:
            result = store.upsert(read_posts(sys.stdin, report, source_name="stdin"))
        else:
            result = store.upsert(read_posts_file(path, report))
        location = store.location
    dropped = len(report.dropped)
    print(
        f"indexed {_plural(result.written, 'post')} into {location} "
        f"({result.spooled} spooled, {_plural(dropped, 'line')} dropped)"
    )
    return 0


def run_search(args: argparse.Namespace) -> int:
    """Handler of ``moments search``: prints matches as a table (or JSON); 0 even when none match."""
    with open_store(args.store) as store:
        posts = store.search(args.query, brand=args.brand, limit=args.limit)
    if args.json:
        text = json.dumps([post.model_dump(mode="json") for post in posts], indent=2, ensure_ascii=False)
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # `moments search ... --json | head` closed the pipe: not an error worth a traceback.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
    else:
        _print_table(args.query, posts)
    return 0


def _print_table(query: str, posts: list[Post]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not posts:
        console.print(f"no posts match {query!r}")
        return
    table = Table(title=f"{_plural(len(posts), 'post')} matching {query!r}", show_lines=False)
    table.add_column("created", no_wrap=True)
    table.add_column("brand")
    table.add_column("author")
    table.add_column("text", ratio=1)
    table.add_column("touchpoint")
    table.add_column("moment")
    table.add_column("flag", no_wrap=True)
    for post in posts:
        text = " ".join(post.text.split())
        if post.title:
            text = f"{' '.join(post.title.split())}: {text}"
        table.add_row(
            post.created_at.strftime("%Y-%m-%d %H:%M") if post.created_at else "",
            ", ".join(post.brand),
            post.author.handle or post.author.display_name or "",
            text[:200] + ("…" if len(text) > 200 else ""),
            post.classification.touchpoint if post.classification else "",
            post.classification.moment if post.classification else "",
            f"{post.flag.priority} {post.flag.status}" if post.flag else "",
        )
    console.print(table)
