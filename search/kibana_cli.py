"""``moments kibana export`` and ``moments kibana import``: the dashboard and its parts, for Kibana 8.x/9.x."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moments import settings
from moments.cli import Commands
from moments.errors import EXIT_FAILED, EXIT_USAGE
from search.kibana import export_ndjson, import_objects, parse_ndjson, saved_objects

DESCRIPTION = """\
Kibana saved objects for Moments: data views over the posts and flags aliases,
the saved searches "Misery, last 24 h" and "Open flags by priority", four Lens
charts (volume by touchpoint x moment over time, sentiment over time, share of
misery per touchpoint, top viral negatives) and the "Moments of truth"
dashboard that holds them. Ids are stable, so importing again updates them.

The data views point at the aliases of $MOMENTS_ES_PREFIX (default: moments),
i.e. moments-posts and moments-flags; --prefix picks another.

examples:
  moments kibana export -o moments-kibana.ndjson
  moments kibana import --kibana-url http://127.0.0.1:5601
  moments kibana import --kibana-url https://elastic:secret@kibana.example:5601 --space brand-team --overwrite
"""

EXPORT_DESCRIPTION = """\
Write the saved objects as NDJSON (one object per line), the format of Kibana's
Stack Management > Saved objects > Import and of its _import API.

examples:
  moments kibana export                       # to standard output
  moments kibana export -o moments-kibana.ndjson
  moments kibana export --prefix acme -o acme-kibana.ndjson
"""

IMPORT_DESCRIPTION = """\
Post the saved objects to Kibana's /api/saved_objects/_import (or
/s/SPACE/api/saved_objects/_import) and print how many were imported and every
error Kibana reports (conflicts, missing references). Exit 1 when Kibana reports
any error or cannot be reached.

Credentials: user and password in the URL (https://user:pass@host:5601), or an
API key in $MOMENTS_KIBANA_API_KEY.

examples:
  moments kibana import --kibana-url http://127.0.0.1:5601
  moments kibana import --kibana-url http://127.0.0.1:5601 --space marketing --overwrite
  moments kibana import --kibana-url http://127.0.0.1:5601 --file moments-kibana.ndjson
"""


def register(commands: Commands) -> None:
    """Add ``kibana`` (``export``, ``import``) to the ``moments`` parser."""
    kibana = commands.add(
        "kibana",
        help="Kibana dashboard and saved searches: export, import",
        description=DESCRIPTION,
        handler=_run_without_action,
    )
    kibana.set_defaults(kibana_parser=kibana)
    actions = commands.group(kibana, dest="kibana_action")
    export = actions.add(
        "export",
        help="write the saved objects as NDJSON",
        description=EXPORT_DESCRIPTION,
        handler=run_export,
    )
    export.add_argument(
        "-o", "--output", metavar="FILE", default="-", help="where to write (default: - for standard output)"
    )
    _add_prefix(export)
    imports = actions.add(
        "import",
        help="import the saved objects into Kibana",
        description=IMPORT_DESCRIPTION,
        handler=run_import,
    )
    imports.add_argument("--kibana-url", metavar="URL", required=True, help="Kibana's base URL, e.g. http://host:5601")
    imports.add_argument("--space", metavar="S", default=None, help="Kibana space id (default: the default space)")
    imports.add_argument(
        "--overwrite", action="store_true", help="replace objects that already exist instead of reporting conflicts"
    )
    imports.add_argument(
        "--file", metavar="FILE", type=Path, default=None, help="an NDJSON export to import (default: build it now)"
    )
    imports.add_argument("--timeout", metavar="SECONDS", type=float, default=30.0, help="wait this long (default: 30)")
    _add_prefix(imports)


def _add_prefix(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefix",
        metavar="PREFIX",
        default=None,
        help="index prefix the data views point at (default: $MOMENTS_ES_PREFIX, else moments)",
    )


def _run_without_action(args: argparse.Namespace) -> int:
    args.kibana_parser.print_help(sys.stderr)
    return EXIT_USAGE


def run_export(args: argparse.Namespace) -> int:
    """Handler of ``moments kibana export``."""
    objects = saved_objects(args.prefix)
    text = export_ndjson(objects)
    if args.output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    path = Path(args.output)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {len(objects)} saved objects to {path}", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Handler of ``moments kibana import``: 0 when Kibana imported everything, 1 otherwise."""
    if args.file is not None:
        # parse first: a file that is not NDJSON is bad input (exit 2), caught before any request
        text = args.file.read_text(encoding="utf-8")
        objects = parse_ndjson(text)
        ndjson = export_ndjson(objects)
    else:
        objects = saved_objects(args.prefix)
        ndjson = export_ndjson(objects)
    report = import_objects(
        args.kibana_url,
        ndjson,
        space=args.space,
        overwrite=args.overwrite,
        api_key=settings.env("MOMENTS_KIBANA_API_KEY"),
        timeout=args.timeout,
    )
    where = f"space {args.space}" if args.space else "the default space"
    print(f"successCount: {report.success_count} of {len(objects)} saved objects imported into {where}")
    lines = report.error_lines()
    if lines:
        print(f"errors: {len(lines)}")
        for line in lines:
            print(f"  {line}")
    if not report.ok:
        if not lines:
            print("errors: Kibana reported success: false without details")
        return EXIT_FAILED
    return 0
