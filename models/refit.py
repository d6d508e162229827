"""The command line shared by the commands that refit one part of a trained model in its folder.

``python -m models.recovery``, ``python -m models.relevance`` and ``python -m models.magic`` each
read a model's artifacts folder, fit or choose their part on validation data, and write it back:
in place, or into a copy (``--out``). Their common options are declared here once.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path


def refit_parser(prog: str, description: str, part: str, *, version: bool, data: bool) -> argparse.ArgumentParser:
    """A parser with the shared options: ``ARTIFACTS``, ``--out``, ``--threads``, and (when asked)
    ``--version`` and ``--data``; the command adds its own."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("artifacts", type=Path, help="a trained model's folder (manifest.json + weights.safetensors)")
    parser.add_argument("--out", type=Path, default=None, help=f"write a copy with the {part} here (default: in place)")
    if version:
        parser.add_argument("--version", default=None, help="a new model_version for the written manifest")
    if data:
        parser.add_argument(
            "--data", type=Path, default=None, help="datasets folder (default: $MOMENTS_DATASETS or ../shared/datasets)"
        )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser


def start(args: argparse.Namespace) -> Path:
    """Log to stderr and return the folder to write: ``--out`` (a copy of the artifacts made here)
    or the artifacts folder itself. (The command loads its classifier with ``threads=args.threads``.)"""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.out is None:
        return Path(args.artifacts)
    shutil.copytree(args.artifacts, args.out, dirs_exist_ok=True)
    return Path(args.out)


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command as it was run, for the manifest to record."""
    return " ".join([f"python -m {module}", *(sys.argv[1:] if argv is None else argv)])
