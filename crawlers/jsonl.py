"""Reading and writing posts as JSON Lines, the format every stage hands on.

A bad line never stops a run: it is reported with its line number and the
reason, counted, and skipped, so every good line still goes through.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from crawlers.schema import Post

log = logging.getLogger("moments.jsonl")


@dataclass
class ReadReport:
    """What :func:`read_posts` kept and what it dropped, with why."""

    read: int = 0
    dropped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.read - len(self.dropped)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "record"
    return f"{where}: {err['msg']}"


def read_posts(lines: Iterable[str], report: ReadReport | None = None, *, source_name: str = "input") -> Iterator[Post]:
    """Parse JSONL lines into posts, skipping (and logging) malformed ones.

    Args:
        lines: An iterable of JSONL lines, for example an open file.
        report: Collects counts and the reason for each dropped line.
        source_name: How the input is named in log messages.

    Yields:
        Every line that is a valid :class:`Post`, in order.
    """
    report = report if report is not None else ReadReport()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        report.read += 1
        try:
            yield Post.model_validate_json(line)
        except ValidationError as exc:
            reason = _first_error(exc)
            if exc.errors()[0]["type"] == "json_invalid":
                reason = f"not valid JSON ({exc.errors()[0]['msg']})"
            report.dropped.append((number, reason))
            log.warning("%s line %d dropped: %s", source_name, number, reason)


def read_posts_file(path: Path, report: ReadReport | None = None) -> Iterator[Post]:
    """:func:`read_posts` over a file path."""
    with path.open(encoding="utf-8") as handle:
        yield from read_posts(handle, report, source_name=str(path))


def write_posts(posts: Iterable[Post], out: IO[str]) -> int:
    """Write posts as JSONL, one per line; returns how many were written."""
    count = 0
    for post in posts:
        out.write(post.to_json())
        out.write("\n")
        count += 1
    out.flush()
    return count


def dumps(post: Post) -> str:
    """A post as a pretty JSON document (for humans, not for files)."""
    return json.dumps(post.model_dump(mode="json"), indent=2, ensure_ascii=False)
