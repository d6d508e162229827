"""The root of the ``moments`` command.

The core knows no stage. Each stage adds its subcommands the same way: a
``register(commands: Commands)`` function named in the ``moments.commands`` entry
point group of ``pyproject.toml``::

    def register(commands: Commands) -> None:
        parser = commands.add("index", help="...", description=DOC, handler=run_index, options=("store",))
        parser.add_argument("input", ...)

:meth:`Commands.add` gives every subcommand the same help layout, ``-v``/``-q``, and
whichever of the shared options it asks for (``--store``, ``--json``, ``--brand``,
``--config``), declared once here so they read the same everywhere.

One exit-code policy (:mod:`moments.errors`): 0 the work was done; 1 the work
failed; 2 bad usage or bad input. A handler returns its status (``None`` is 0) or
raises a :class:`~moments.errors.MomentsError`, printed as one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from moments.errors import EXIT_USAGE, MomentsError

Handler = Callable[[argparse.Namespace], int | None]

ENTRY_POINT_GROUP = "moments.commands"

DESCRIPTION = """\
Moments watches what customers say about a brand in public and finds the
moments of truth: crawl posts and reviews, classify each one (sentiment,
customer-journey touchpoint, magic or misery), index them for search, and
flag negative posts that are spreading so a care team can step in.

Typical use:
  moments crawl mastodon --query northwindair --base-url https://mastodon.social -o posts.jsonl
  moments classify posts.jsonl -o classified.jsonl
  moments index classified.jsonl            # embedded store under $MOMENTS_HOME (./var)
  moments flag && moments flags             # raise and list care-team flags
  moments flags show post:mastodon:123      # one flag, its reasons and its event log
  moments run --config brands.yaml          # all of the above as one Prefect flow run
  moments demo                              # the whole job offline on a bundled corpus

Stores: the embedded SQLite store is the default; pass --store http://127.0.0.1:9200
(or set MOMENTS_STORE) to use Elasticsearch.

Exit status: 0 done; 1 the work failed (store unreachable, source down);
2 bad usage or input (unknown option, invalid config, missing file, stale --if-version).
"""

STORE_HELP = (
    "where posts and flags live: http(s)://host:9200 for Elasticsearch, or a SQLite file path "
    "(default: $MOMENTS_STORE, else the embedded store $MOMENTS_HOME/moments.db, ./var by default)"
)

#: The shared options, declared once: name -> (flags, add_argument keyword arguments).
SHARED_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "store": (("--store",), {"metavar": "STORE", "default": None, "help": STORE_HELP}),
    "json": (("--json",), {"action": "store_true", "help": "print JSON instead of a table"}),
    "brand": (("--brand",), {"metavar": "BRAND", "default": None, "help": "only this brand (its name in brands.yaml)"}),
    "config": (
        ("--config",),
        {
            "metavar": "FILE",
            "type": Path,
            "default": None,
            "help": "brands.yaml (default: $MOMENTS_CONFIG, else ./brands.yaml; see crawlers/brands.example.yaml)",
        },
    ),
}


def add_shared_options(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """Add shared options by name (``store``, ``json``, ``brand``, ``config``) to ``parser``."""
    for name in names:
        flags, kwargs = SHARED_OPTIONS[name]
        parser.add_argument(*flags, **kwargs)


def _verbosity_parent() -> argparse.ArgumentParser:
    # SUPPRESS: given after the subcommand, -v/-q set the value; absent, they leave the root's.
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more logging (-vv for debug)"
    )
    parent.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors"
    )
    return parent


class Commands:
    """What a stage's ``register`` function gets: the one way to add a subcommand."""

    def __init__(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self._subparsers = subparsers
        self._parent = _verbosity_parent()

    def add(
        self,
        name: str,
        *,
        help: str,
        description: str,
        handler: Handler,
        options: Sequence[str] = (),
        epilog: str | None = None,
        passthrough: bool = False,
        add_help: bool = True,
    ) -> argparse.ArgumentParser:
        """Add ``moments NAME``.

        Args:
            name: The subcommand.
            help: One line for ``moments --help``.
            description: The subcommand's ``--help`` text, with examples (kept as written).
            handler: Called with the parsed arguments; returns the exit status.
            options: Shared options it takes: any of ``store``, ``json``, ``brand``, ``config``.
            epilog: Text after the options in ``--help``.
            passthrough: Arguments this parser does not know are handed to the handler as
                ``args.extra`` instead of being an error: for a command whose first word
                picks an action with options of its own (``moments search erase --author X``).
                The handler must reject what it does not use.
            add_help: False for a command that prints its own ``--help`` (an action's help).

        Returns:
            The subcommand's parser, for its own arguments.
        """
        parser = self._subparsers.add_parser(
            name,
            help=help,
            description=description,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[self._parent],
            add_help=add_help,
        )
        add_shared_options(parser, options)
        parser.set_defaults(passthrough=passthrough)
        # The full command ("flags show"), for one-line errors; a nested parser's default wins.
        parser.set_defaults(handler=handler, command_path=parser.prog.partition(" ")[2])
        return parser

    def group(self, parser: argparse.ArgumentParser, *, dest: str) -> Commands:
        """Subcommands under ``parser`` (``moments flags list``); the parser's own handler is the default."""
        return Commands(parser.add_subparsers(dest=dest, metavar="ACTION", required=False))


def build_parser(registrars: Iterable[Callable[[Commands], None]] | None = None) -> argparse.ArgumentParser:
    """The full ``moments`` parser, with every installed stage's subcommands.

    Args:
        registrars: The stages' ``register`` functions; default: the ``moments.commands`` entry points.
    """
    parser = argparse.ArgumentParser(
        prog="moments", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = Commands(subparsers)
    if registrars is None:
        registrars = [ep.load() for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_stage_order)]
    for register in registrars:
        register(commands)
    return parser


# The order stages appear in `moments --help`: the pipeline's order.
_STAGES = ("crawl", "classify", "search", "flows")


def _stage_order(entry: Any) -> tuple[int, str]:
    name = str(entry.name)
    return (_STAGES.index(name) if name in _STAGES else len(_STAGES), name)


def configure_logging(verbose: int, quiet: bool) -> None:
    """One log format on stderr; the libraries' chatter only with ``-vv``."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("scrapy", "twisted", "prefect", "httpx", "elastic_transport", "urllib3", "filelock"):
            logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``moments`` console script: parse, run the handler, map failures to exit codes."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    configure_logging(args.verbose, args.quiet)
    handler: Handler = args.handler
    name = getattr(args, "command_path", None) or args.command
    try:
        status = handler(args)
    except MomentsError as exc:
        print(f"moments {name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except FileNotFoundError as exc:
        # A missing input file is bad input, named in one line.
        message = f"no such file: {exc.filename}" if exc.filename else str(exc)
        print(f"moments {name}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"moments {name}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
