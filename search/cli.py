"""``moments index`` and ``moments search``: load classified posts into a store, query it, migrate it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from moments.cli import Commands
from moments.errors import EXIT_USAGE
from moments.records import Post, ReadReport, read_posts, read_posts_file
from search.backends import open_store
from search.query import parse


@dataclass(frozen=True)
class SearchAction:
    """A ``moments search WORD ...`` action: its own options, help and handler.

    An action module (``search/erase_cli.py``, say) defines one of these; it is listed in
    :data:`SEARCH_ACTIONS` below. The action's options are parsed from what ``moments
    search`` itself did not know, so ``moments search erase --author @x`` works while
    ``moments search erase`` stays searchable as ``moments search '"erase"'``.
    """

    help: str
    description: str
    run: Callable[[argparse.Namespace], int]
    configure: Callable[[argparse.ArgumentParser], None] = lambda parser: None


INDEX_DESCRIPTION = """\
Index posts from a JSONL file (one Post per line, as written by `moments crawl`
or `moments classify`) into the store. Re-indexing the same file is safe: posts
are upserted by id, and a care-team flag already on a stored post is kept when
the incoming post has none. Malformed lines are reported with their line number
and skipped; every good line is indexed.

Lines must be Moments posts (id, source, native_id, text, crawled_at, ...). A file of
your own records (an id and a text, say) classifies as it is, but to index it turn it
into posts first: `moments crawl import --query FILE --config brands.yaml` (column
mapping under `import:` in brands.yaml).

If Elasticsearch is unavailable mid-run, posts are spooled under
$MOMENTS_HOME/spool and written by the next `moments index`.

examples:
  moments index classified.jsonl
  moments index classified.jsonl --store http://127.0.0.1:9200
  moments classify posts.jsonl -o - | moments index -
"""

SEARCH_DESCRIPTION = """\
Search posts, best match first. The query language is the same on both stores
and they return the same posts for the same query.

  delay                    the word, in post text, title or author name
                           (whole words, any case)
  "lost bag"               a phrase: these words in this order, in one field
  refu*                    words starting with "refu"
  refund late              both words (same as: refund AND late)
  refund OR voucher        either word
  NOT delay                every post without the word
  (refund OR voucher) NOT delay
                           parentheses group; NOT binds tighter than AND,
                           AND tighter than OR
  title:delay  text:"lost bag"
                           only in that field (text, title, author.display_name)
  touchpoint:baggage  sentiment:negative  moment:misery  source:reddit
  lang:en  brand:"Northwind Air"  author:@handle
                           a field's exact value (any case); value* for a prefix;
                           touchpoint:(baggage OR boarding) for several
  created_at:2026-11-01    that whole UTC day
  created_at:>=2026-11-01  created_at:<2026-11-02T12:00:00Z  (also > and <=)
                           a date or time covers the whole day/minute/second it
                           names; times without a zone are UTC

Operators are upper case (and, or, not are plain words). To search for text
that looks like syntax (a URL, a word with a colon, AND), quote it. Anything else
is a syntax error that names the column (exit 2); nothing is guessed.

`moments search migrate` brings a store written by an older release up to the
current schema (flags that lived inside posts become flag records with their event
log); opening a store does the same, so this is for doing it at a time you choose.
To search for the word "migrate", quote it: moments search '"migrate"'. Every
action has its own help: moments search migrate --help.

examples:
  moments search delay
  moments search '"lost bag"' --brand northwind
  moments search 'refund AND late' --limit 5 --json | jq '.[].url'
  moments search 'touchpoint:baggage sentiment:negative NOT refund*'
  moments search 'created_at:>=2026-11-01 created_at:<2026-11-08 (delay OR cancelled)'
  moments search migrate --store http://127.0.0.1:9200
"""


def _migrate_action() -> SearchAction:
    return SearchAction(
        help="bring a store written by an older release up to the current schema",
        description=(
            "Migrate the store now and say what moved: flags that lived inside posts become\n"
            "flag records with their event log. Opening a store does the same; this is for\n"
            "doing it at a time you choose.\n\nexamples:\n  moments search migrate\n"
            "  moments search migrate --store http://127.0.0.1:9200\n"
        ),
        run=lambda args: run_migrate(args),
    )


#: ``moments search WORD`` actions; to search for one of these words, quote it as a phrase.
SEARCH_ACTIONS: dict[str, SearchAction] = {
    "migrate": _migrate_action(),
}


def register(commands: Commands) -> None:
    """Add ``index`` and ``search`` to the ``moments`` command line."""
    index = commands.add(
        "index",
        help="index classified posts (JSONL) into the store",
        description=INDEX_DESCRIPTION,
        handler=run_index,
        options=("store",),
    )
    index.add_argument("input", metavar="IN", help="JSONL file of posts, or - for standard input")

    search = commands.add(
        "search",
        help="full-text search the store (or: search migrate)",
        description=SEARCH_DESCRIPTION,
        handler=run_search,
        options=("store", "brand", "json"),
        passthrough=True,
        add_help=False,
    )
    search.add_argument("-h", "--help", action="store_true", help="show this help (or an action's: search erase -h)")
    search.add_argument(
        "query", metavar="QUERY", nargs="?", help="what to look for, in the query language above, or an action"
    )
    search.set_defaults(search_parser=search)
    search.add_argument("--limit", type=_positive, default=20, help="at most this many results (default: 20)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def run_index(args: argparse.Namespace) -> int:
    """Handler of ``moments index``: 0 when the good lines were indexed or spooled; 2 when no line was a post."""
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
    if any(_not_a_post(reason) for _, reason in report.dropped):
        print(
            "moments index: some lines are JSON records but not Moments posts; turn a file of your own "
            f"records into posts with: moments crawl import --query {args.input} --config brands.yaml",
            file=sys.stderr,
        )
    if report.dropped and not report.kept:
        return EXIT_USAGE  # nothing in the input was a post: bad input, not a job done
    return 0


def _not_a_post(reason: str) -> bool:
    # A record that parsed as JSON but lacks the fields every post has.
    return reason.endswith("Field required") and reason.split(":")[0] in ("native_id", "source", "crawled_at", "id")


def run_search(args: argparse.Namespace) -> int:
    """Handler of ``moments search``: prints matches as a table (or JSON); 0 even when none match."""
    parser: argparse.ArgumentParser = args.search_parser
    action = SEARCH_ACTIONS.get(args.query or "")
    if action is not None:
        return _run_action(parser, args.query, action, args)
    if args.help:
        parser.print_help()
        parser.exit()
    if args.extra:
        parser.error(f"unrecognized arguments: {' '.join(args.extra)}")
    if args.query is None:
        parser.error("the following arguments are required: QUERY")
    # A syntax error is bad input (exit 2), found before a store is opened (or created).
    parse(args.query)
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


def _run_action(
    search_parser: argparse.ArgumentParser, name: str, action: SearchAction, args: argparse.Namespace
) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{search_parser.prog} {name}",
        description=action.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    action.configure(parser)
    if args.help:
        parser.print_help()
        parser.exit()
    # The action's options fill in the same namespace, beside --store, --brand and --json.
    parser.parse_args(args.extra, namespace=args)
    return action.run(args)


def _print_table(query: str, posts: list[Post]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

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
    for post in posts:
        text = " ".join(post.text.split())
        if post.title:
            text = f"{' '.join(post.title.split())}: {text}"
        table.add_row(
            post.created_at.strftime("%Y-%m-%d %H:%M") if post.created_at else "",
            ", ".join(post.brand),
            # Post text and names are hostile input: plain Text, never console markup.
            Text(post.author.handle or post.author.display_name or ""),
            Text(text[:200] + ("…" if len(text) > 200 else "")),
            post.classification.touchpoint if post.classification else "",
            post.classification.moment if post.classification else "",
        )
    console.print(table)


def run_migrate(args: argparse.Namespace) -> int:
    """``moments search migrate``: migrate the store now and say what moved."""
    with open_store(args.store, migrate=False) as store:
        report = store.migrate()
        flags = store.count_flags(status=None)
        location = store.location
    print(f"migrated {location}: {report}; {flags} flags in the store")
    return 0
