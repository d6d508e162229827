"""File import: JSONL or CSV exports from other tools (``moments crawl import``).

The query is the file: a local path (read through Scrapy as a ``file://``
URL, so it goes through the same pipelines, stats and health as any source)
or a URL / a path under ``--base-url``.

Columns are mapped to post fields by the ``import:`` section of the config::

    import:
      format: csv            # csv | jsonl; default: from the suffix (.csv, .jsonl/.ndjson/.json)
      source: brandwatch     # the posts' source (default: import)
      columns:               # post field -> column (dotted paths reach into JSON objects)
        native_id: id
        text: body
        created_at: date
        author.handle: user.screen_name
        engagement.likes: favorites

Fields without a mapping are looked up under common column names (``id``,
``text``/``content``/``body``, ``created_at``/``date``/``timestamp``,
``author``/``user``/``username``, ``likes``, ``shares``/``retweets``,
``replies``/``comments``, ``url``/``link``, ``title``, ``rating``), so a
Moments JSONL file imports with no mapping at all. A row that cannot be read
is dropped with its line number; the rest go on.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from scrapy.http import Response

from crawlers.spiders.base import MomentsSpider
from crawlers.text import stable_id
from moments.config import ImportConfig

DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "native_id": ("native_id", "id", "post_id", "review_id", "guid"),
    "text": ("text", "content", "body", "message", "review", "full_text"),
    "title": ("title", "subject", "headline"),
    "url": ("url", "link", "permalink"),
    "created_at": ("created_at", "date", "timestamp", "published", "time", "created"),
    "author.handle": (
        "author.handle",
        "author",
        "user",
        "username",
        "screen_name",
        "handle",
        "user.screen_name",
        "user.username",
        "user.handle",
    ),
    "author.display_name": ("author.display_name", "author_name", "display_name", "name"),
    "author.followers": ("author.followers", "followers", "followers_count", "user.followers_count"),
    "engagement.likes": ("engagement.likes", "likes", "favorites", "favourites", "like_count"),
    "engagement.shares": ("engagement.shares", "shares", "retweets", "reposts", "retweet_count"),
    "engagement.replies": ("engagement.replies", "replies", "comments", "reply_count", "num_comments"),
    "engagement.views": ("engagement.views", "views", "impressions"),
    "engagement.quotes": ("engagement.quotes", "quotes", "quote_count"),
    "engagement.score": ("engagement.score", "score", "points"),
    "rating": ("rating", "stars"),
    "lang": ("lang", "language"),
}


def get_path(row: dict[str, Any], path: str) -> Any:
    """A column, or a dotted path into nested JSON objects (``user.screen_name``)."""
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


class FileImportSpider(MomentsSpider):
    """Import posts from a JSONL or CSV file."""

    name = "import"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings_import: ImportConfig = self.ctx.config.import_ if self.ctx.config else ImportConfig()

    async def start(self) -> AsyncIterator[Any]:
        target = self.query.strip()
        if target.startswith(("http://", "https://", "file://")):
            url = target
        elif self.base_url:
            url = urljoin(self.base_url, target)
        else:
            path = Path(target).expanduser()
            if not path.exists():
                self.ctx.error(f"import file not found: {path}")
                return
            url = path.resolve().as_uri()
        yield self.request(url, self.parse)

    def file_format(self, url: str) -> str:
        """``csv`` or ``jsonl``: from the config, else from the file's suffix."""
        if self.settings_import.format:
            return self.settings_import.format.lower()
        return "csv" if url.lower().split("?")[0].endswith((".csv", ".tsv")) else "jsonl"

    def parse(self, response: Response) -> Iterator[Any]:
        try:
            text = response.body.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = response.body.decode("latin-1")
        if self.file_format(response.url) == "csv":
            delimiter = "\t" if response.url.lower().endswith(".tsv") else self.settings_import.delimiter
            reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
            for line, row in enumerate(reader, start=2):
                yield from self.row_to_post(dict(row), line)
        else:
            for line, raw in enumerate(text.splitlines(), start=1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except ValueError as exc:
                    self.ctx.drop("malformed_json", f"line {line}: {exc}")
                    continue
                if not isinstance(row, dict):
                    self.ctx.drop("unexpected_layout", f"line {line}: not a JSON object")
                    continue
                yield from self.row_to_post(row, line)

    def column(self, row: dict[str, Any], field: str) -> Any:
        """The value of a post field in a row, by the mapping or the usual names."""
        mapped = self.settings_import.columns.get(field)
        if mapped:
            return get_path(row, mapped)
        for name in DEFAULT_COLUMNS.get(field, ()):
            value = get_path(row, name)
            if value not in (None, "") and not isinstance(value, dict):
                return value
        return None

    def row_to_post(self, row: dict[str, Any], line: int) -> Iterator[dict[str, Any]]:
        """Map one row to a raw post (nothing, with a counted reason, when it has no text)."""
        text = self.column(row, "text")
        if text in (None, ""):
            self.ctx.drop("empty_text", f"line {line}")
            return
        native_id = self.column(row, "native_id") or stable_id(self.query, line, text)
        source = self.settings_import.columns.get("source")
        engagement = {f.split(".", 1)[1]: self.column(row, f) for f in DEFAULT_COLUMNS if f.startswith("engagement.")}
        yield self.post(
            native_id=native_id,
            text=str(text),
            html="<" in str(text) and ">" in str(text),
            title=self.column(row, "title"),
            url=self.column(row, "url"),
            created_at=self.column(row, "created_at"),
            author={
                "handle": self.column(row, "author.handle"),
                "display_name": self.column(row, "author.display_name"),
                "followers": self.column(row, "author.followers"),
            },
            engagement={k: v for k, v in engagement.items() if v not in (None, "")},
            rating=self.column(row, "rating"),
            lang=self.column(row, "lang"),
            source=str(get_path(row, source)) if source else self.settings_import.source,
            extra={"import_line": line},
        )
