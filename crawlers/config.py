"""Crawl configuration: ``brands.yaml``.

Shape (see ``crawlers/brands.example.yaml`` for a complete example)::

    contact_url: https://example.org/moments-contact   # goes in the User-Agent
    credentials:                       # optional, per source; ${ENV} is expanded
      mastodon: {token: ${MASTODON_TOKEN}}
      bluesky: {identifier: me.bsky.social, app_password: ${BSKY_APP_PASSWORD}}
      reddit: {client_id: ..., client_secret: ...}
    import:                            # column mapping for `moments crawl import`
      format: csv                      # csv | jsonl (default: from the file suffix)
      columns: {native_id: id, text: body, created_at: date, author.handle: user,
                engagement.likes: likes, url: link}
    brands:
      - name: Northwind Air
        names: ["Northwind Air", Northwind]       # matched as phrases
        handles: ["@northwindair"]                 # matched as mentions / words
        keywords: ['"lost bag" AND northwind', 'northwindair OR #flynorthwind']
        exclude: ['"northwind traders"', 'recipe']
        sources:
          - {source: mastodon, query: northwindair, base_url: https://mastodon.social}
          - {source: appstore, query: "1234567890", country: gb}

Keyword and exclusion expressions use ``AND``, ``OR``, ``NOT``, parentheses
and ``"quoted phrases"``; adjacent terms mean AND (see :mod:`crawlers.brands`).
A post is kept for a brand when any name, handle or keyword expression
matches and no exclusion does. The brand's ``name`` is always one of its names.
A source listed under a brand with ``match: all`` (the default for
``appstore`` and ``jsonld``: reviews of the brand's own app or pages) keeps
every post for that brand, whatever the text says.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Sources whose posts are about the brand that lists them (reviews of its app or pages).
OWNED_SOURCES = ("appstore", "jsonld")
SOURCES = ("mastodon", "bluesky", "reddit", "hackernews", "lemmy", "appstore", "jsonld", "rss", "import")


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Model):
    """One crawl job of a brand: which source, what to ask it, and where it lives."""

    source: str
    query: str
    base_url: str | None = None
    country: str = "us"
    since: str | None = None
    # "text": keep posts whose text matches a brand (social sources); "all": every
    # post is about this brand (its own app's reviews, its review pages).
    match: Literal["text", "all"] | None = None

    @property
    def match_mode(self) -> str:
        """``match``, defaulting to ``all`` for appstore and jsonld and ``text`` elsewhere."""
        return self.match or ("all" if self.source in OWNED_SOURCES else "text")

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value not in SOURCES:
            raise ValueError(f"unknown source {value!r}; expected one of {', '.join(SOURCES)}")
        return value


class BrandConfig(_Model):
    """A brand to watch: how it is named and what to crawl for it."""

    name: str
    names: list[str] = Field(default_factory=list)
    handles: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    sources: list[SourceConfig] = Field(default_factory=list)


class ImportConfig(_Model):
    """How to read a file exported by another tool."""

    format: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    source: str = "import"
    delimiter: str = ","


class CrawlConfig(_Model):
    """The whole ``brands.yaml``."""

    contact_url: str | None = None
    credentials: dict[str, dict[str, str]] = Field(default_factory=dict)
    import_: ImportConfig = Field(default_factory=ImportConfig, alias="import")
    brands: list[BrandConfig] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def credentials_for(self, source: str) -> dict[str, str]:
        """Credentials of one source (empty when none are configured)."""
        return {k: v for k, v in self.credentials.get(source, {}).items() if v}


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any) -> Any:
    # Secrets stay out of the file: ${NAME} is read from the environment.
    if isinstance(value, str):
        return _ENV.sub(lambda m: os.environ.get(m.group(1), ""), value)
    if isinstance(value, list):
        return [_expand_env(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    return value


def parse_config(data: Any) -> CrawlConfig:
    """Validate an already-parsed YAML document into a :class:`CrawlConfig`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping with a 'brands' list")
    try:
        return CrawlConfig.model_validate(_expand_env(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{where}: {err['msg']}") from exc


def load_config(path: str | Path) -> CrawlConfig:
    """Read and validate ``brands.yaml``.

    Args:
        path: The YAML file.

    Returns:
        The typed configuration; ``config.brands[*].sources`` lists the crawl jobs.

    Raises:
        ConfigError: The file is missing, not YAML, or does not fit the shape above.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return parse_config(data)
