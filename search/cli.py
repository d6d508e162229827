"""``moments index`` and ``moments search``: load classified posts into a store, query it, migrate it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from moments.cli import Commands
from moments.errors import EXIT_USAGE, UsageError
from moments.records import Post, ReadReport, read_posts, read_posts_file, utc_now
from search.aggregations import AGGREGATIONS, check_name
from search.backends import open_store
from search.query import SORTS, parse, parse_when


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

Periods, order and paging:
  --since WHEN             only posts created at or after WHEN: a time before now
                           (30m, 24h, 7d, 2w) or an ISO date/time (2026-11-01,
                           2026-11-01T09:00Z; UTC unless it names a zone)
  --until WHEN             only posts created before WHEN (excluded: --until
                           2026-11-08 ends at the last moment of 7 November)
                           With --since or --until the QUERY may be left out.
  --sort relevance         best match first (the default)
  --sort recent            newest first; posts without a date last
  --sort engagement        most interactions first: likes (or, where a source
                           has votes instead, a positive score) + shares +
                           replies + quotes. Every order breaks ties by post id.
  --limit N                the first N posts (default 20)
  --all                    every post that matches, however many; with --json
                           one post per line (JSONL), written as it is read.
                           Stable while posts are being written.

Aggregations (--agg NAME, counted by the store; the QUERY, --brand, --since and
--until filter them; --json prints the JSON, otherwise a table):
  timeline        posts per time bucket x touchpoint x moment; buckets are
                  hours up to 3 days, days up to 90 days, weeks (from Monday,
                  UTC) beyond; default period: the last 7 days
  moment_share    per touchpoint: volume, misery share and magic share, with
                  the previous period of the same length; default: 7 days
  top_authors     the authors with the most followers, and with the most
                  complaints (negative or misery posts)
  standout_terms  per touchpoint, the words of the post text that stand out in
                  its misery posts against every post matching the filters
                  (Dunning's log-likelihood ratio G2 on post counts)
  volume          posts per source x language

Store actions (each has its own help: moments search ACTION --help; to search
for one of these words, quote it: moments search '"migrate"'):
{actions}

examples:
  moments search delay
  moments search '"lost bag"' --brand northwind
  moments search 'refund AND late' --limit 5 --json | jq '.[].url'
  moments search 'touchpoint:baggage sentiment:negative NOT refund*'
  moments search 'created_at:>=2026-11-01 created_at:<2026-11-08 (delay OR cancelled)'
  moments search refund --since 7d --sort recent
  moments search 'moment:magic' --since 30d --sort engagement --limit 10
  moments search 'touchpoint:fulfilment refund lang:fr source:reddit' --all --json > refunds.jsonl
  moments search --agg moment_share --since 7d --brand northwind
  moments search --agg standout_terms --since 7d --json | jq '.touchpoints'
  moments search --agg timeline 'touchpoint:baggage' --since 2026-11-01 --until 2026-12-01 --json
  moments search migrate --store http://127.0.0.1:9200
"""


def _migrate_action() -> SearchAction:
    return SearchAction(
        help="bring a store written by an older release up to the current schema",
        description=(
            "Migrate the store now and say what moved: flags that lived inside posts become\n"
            "flag records with their event log. Opening a store does the same; this is for\n"
            "doing it at a time you choose.\n\n"
            "On Elasticsearch it also moves an index whose mapping differs from the schema (a\n"
            "field changed type, or left the schema): a new <prefix>-posts-v<N+1> is built,\n"
            "the documents copied, and the alias swapped in one step. Writes made meanwhile\n"
            "are retried, then spooled, and land in the new index.\n\nexamples:\n  moments search migrate\n"
            "  moments search migrate --store http://127.0.0.1:9200\n"
        ),
        run=lambda args: run_migrate(args),
    )


def _replay_action() -> SearchAction:
    from search.deadletter import REPLAY_DESCRIPTION, run_replay

    return SearchAction(help="write again the posts the store refused", description=REPLAY_DESCRIPTION, run=run_replay)


def _erase_action() -> SearchAction:
    from search.erasure import ERASE_DESCRIPTION, configure_erase, run_erase

    return SearchAction(
        help="erase one author's posts, flags, snapshots and spooled copies (GDPR)",
        description=ERASE_DESCRIPTION,
        run=run_erase,
        configure=configure_erase,
    )


def _purge_action() -> SearchAction:
    from search.retention import PURGE_DESCRIPTION, configure_purge, run_purge

    return SearchAction(
        help="delete posts, engagement snapshots and closed flags past their retention periods",
        description=PURGE_DESCRIPTION,
        run=run_purge,
        configure=configure_purge,
    )


#: ``moments search WORD`` actions; to search for one of these words, quote it as a phrase.
SEARCH_ACTIONS: dict[str, SearchAction] = {
    "migrate": _migrate_action(),
    "replay-dead-letters": _replay_action(),
    "erase": _erase_action(),
    "purge": _purge_action(),
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
        description=SEARCH_DESCRIPTION.format(
            actions="\n".join(f"  {name:<20} {action.help}" for name, action in SEARCH_ACTIONS.items())
        ),
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
    search.add_argument("--limit", type=_positive, default=None, help="at most this many results (default: 20)")
    search.add_argument(
        "--all", action="store_true", dest="all_hits", help="every hit, no limit (with --json: JSONL, streamed)"
    )
    search.add_argument(
        "--since", metavar="WHEN", help="only posts created at/after WHEN: 30m, 24h, 7d, 2w before now, or ISO"
    )
    search.add_argument("--until", metavar="WHEN", help="only posts created before WHEN (ISO date or time, or 7d)")
    search.add_argument("--sort", choices=SORTS, default="relevance", help="order of the posts (default: relevance)")
    search.add_argument("--agg", metavar="NAME", help=f"an aggregation instead of posts: {', '.join(AGGREGATIONS)}")


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
    rejected = f"{result.rejected} rejected" + (f" -> dead-letter {result.dead_letter}" if result.dead_letter else "")
    print(
        f"indexed {_plural(result.written, 'post')} into {location}: {result.indexed} new, {result.updated} updated, "
        f"{rejected}, {result.retried} retried ({result.spooled} spooled, {_plural(dropped, 'line')} dropped)"
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
    """Handler of ``moments search``: prints matches (or an aggregation) as a table or JSON; 0 even when none match."""
    parser: argparse.ArgumentParser = args.search_parser
    action = SEARCH_ACTIONS.get(args.query or "") if args.agg is None else None
    if action is not None:
        given = [flag for flag, value in _search_only_options(args) if value]
        if given:
            raise UsageError(f"{', '.join(given)}: only for a search, not for `moments search {args.query}`")
        return _run_action(parser, args.query, action, args)
    if args.help:
        parser.print_help()
        parser.exit()
    if args.extra:
        parser.error(f"unrecognized arguments: {' '.join(args.extra)}")
    # Bad input (a date, a name, the syntax) is exit 2, found before a store is opened (or created).
    now = utc_now()
    since = parse_when(args.since, now=now, option="--since") if args.since else None
    until = parse_when(args.until, now=now, option="--until") if args.until else None
    if since is not None and until is not None and since >= until:
        raise UsageError(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})")
    if args.agg is not None:
        return _run_aggregation(args, since=since, until=until)
    if args.query is None and since is None and until is None:
        parser.error("the following arguments are required: QUERY (or --since/--until for every post in a period)")
    query: str | None = args.query  # None: every post of the period
    if query is not None:
        parse(query)
    if args.all_hits and args.limit is not None:
        raise UsageError("--all and --limit do not go together: --all prints every hit")
    with open_store(args.store) as store:
        if args.all_hits and args.json:
            hits = store.iter_search(query, brand=args.brand, since=since, until=until, sort=args.sort)
            try:
                _stream_jsonl(hits)
            finally:
                # A reader that went away leaves the stream half read: end it now (an
                # Elasticsearch point in time is closed), not when it is collected.
                close = getattr(hits, "close", None)
                if close is not None:
                    close()
            return 0
        if args.all_hits:
            posts = list(store.iter_search(query, brand=args.brand, since=since, until=until, sort=args.sort))
        else:
            limit = args.limit if args.limit is not None else 20
            posts = store.search(query, brand=args.brand, limit=limit, since=since, until=until, sort=args.sort)
    if args.json:
        _write(json.dumps([post.model_dump(mode="json") for post in posts], indent=2, ensure_ascii=False) + "\n")
    else:
        _print_table(args.query or "every post", posts)
    return 0


def _search_only_options(args: argparse.Namespace) -> list[tuple[str, object]]:
    """The options of a search that an action (``search erase``) would silently ignore, with their values."""
    return [
        ("--limit", args.limit),
        ("--all", args.all_hits),
        ("--since", args.since),
        ("--until", args.until),
        ("--sort", args.sort != "relevance"),
        ("--agg", args.agg),
    ]


def _write(text: str) -> bool:
    """Write to stdout and flush; ``False`` once the reader has gone (``| head``), quietly, with no traceback."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader closed the pipe: not an error worth a traceback. Later writes (and the
        # interpreter's final flush) go nowhere.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return False
    return True


def _stream_jsonl(posts: Iterator[Post]) -> None:
    """One post per line, each flushed as it is read, so a pipe sees hits at once and memory stays flat."""
    for post in posts:
        if not _write(post.model_dump_json() + "\n"):
            return


def _run_aggregation(args: argparse.Namespace, *, since: datetime | None, until: datetime | None) -> int:
    """``moments search --agg NAME``: the aggregation as JSON, or as tables."""
    name = check_name(args.agg)
    query = args.query or ""
    if query:
        parse(query)
    with open_store(args.store) as store:
        result = store.aggregate(name, query=query, brand=args.brand, since=since, until=until)
    if args.json:
        _write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    else:
        _print_aggregation(result)
    return 0


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def _print_aggregation(result: dict[str, Any]) -> None:
    """An aggregation as one or two plain tables (names and terms are customer text: never markup)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    def table(title: str, columns: list[str], rows: list[list[object]]) -> Table:
        shown = Table(title=title)
        for column in columns:
            shown.add_column(column)
        for row in rows:
            shown.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
        return shown

    name = result["name"]
    console = Console()
    period = f" {result['since']} to {result['until']}" if "since" in result else ""
    if name == "timeline":
        rows = [[b["start"], b["touchpoint"], b["moment"], b["count"]] for b in result["buckets"]]
        title = f"posts per {result['interval']},{period}"
        console.print(table(title, ["start (UTC)", "touchpoint", "moment", "posts"], rows))
    elif name == "moment_share":
        rows = [
            [
                row["touchpoint"],
                row["current"]["volume"],
                _percent(row["current"]["misery_share"]),
                _percent(row["current"]["magic_share"]),
                row["previous"]["volume"],
                _percent(row["previous"]["misery_share"]),
                _percent(row["previous"]["magic_share"]),
            ]
            for row in result["touchpoints"]
        ]
        columns = ["touchpoint", "posts", "misery", "magic", "posts before", "misery before", "magic before"]
        console.print(table(f"moments per touchpoint,{period}", columns, rows))
    elif name == "top_authors":
        reach = [[a["handle"], a["followers"], a["posts"]] for a in result["by_reach"]]
        console.print(table("widest reach", ["author", "followers", "posts"], reach))
        complaints = [[a["handle"], a["complaints"], a["followers"]] for a in result["by_complaints"]]
        console.print(table("most complaints", ["author", "complaints", "followers"], complaints))
    elif name == "standout_terms":
        rows = [
            [touchpoint, result["misery_posts"].get(touchpoint, 0), ", ".join(t["term"] for t in terms)]
            for touchpoint, terms in result["touchpoints"].items()
        ]
        console.print(table("terms standing out in misery posts", ["touchpoint", "misery posts", "terms"], rows))
    else:
        rows = [[b["source"], b["lang"] or "?", b["posts"]] for b in result["buckets"]]
        console.print(table(f"{result['total']} posts per source and language", ["source", "lang", "posts"], rows))


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
