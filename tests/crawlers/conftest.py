"""Fixtures for crawler tests: ``crawl`` runs ``moments crawl`` against recordings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from crawl_helpers import AS_OF, RECORDINGS, Crawl, CrawlResult, run_cli

from crawlers.mockserver import running_server


@pytest.fixture
def crawl(tmp_home: Path) -> Crawl:
    """``crawl(recordings, source, query, *extra_args, env=...)``: serve, crawl, collect.

    ``recordings`` is a path (file or directory, relative to the recordings
    folder) or ``None`` for no server (then pass ``--base-url`` yourself).
    The request log of the server is attached to the result.
    """

    def run(recordings: str | Path | None, source: str, query: str, *extra: str, **kwargs: Any) -> CrawlResult:
        args = [source, "--query", query, *extra]
        if "--as-of" not in extra:
            args += ["--as-of", AS_OF]
        if recordings is None:
            return run_cli(args, tmp_home, **kwargs)
        path = recordings if isinstance(recordings, Path) else RECORDINGS / recordings
        with running_server(path) as server:
            result = run_cli([*args, "--base-url", server.base_url], tmp_home, **kwargs)
            result.requests = list(server.request_log)
            result.request_times = list(server.request_times)
        return result

    return run
