"""Helpers for crawler tests: real ``moments crawl`` runs against the recording server.

Every crawl runs in its own process (Twisted's reactor cannot restart in one),
through the real CLI, against :func:`crawlers.mockserver.serve_recordings`,
with politeness delays off (``MOMENTS_CRAWL_FAST=1``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moments.records import Post, read_posts

RECORDINGS = Path(__file__).parent / "recordings"
DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[2]
AS_OF = "2026-11-20T12:00:00Z"


@dataclass
class CrawlResult:
    """What one ``moments crawl`` run produced."""

    returncode: int
    posts: list[Post]
    stats: dict[str, Any]
    stderr: str
    elapsed: float
    requests: list[str] = field(default_factory=list)
    request_times: list[float] = field(default_factory=list)

    def gap(self, first: str, second: str) -> float:
        """Seconds between the first request containing ``first`` and the next one containing ``second``."""
        i = next(n for n, r in enumerate(self.requests) if first in r)
        j = next(n for n, r in enumerate(self.requests) if n > i and second in r)
        return self.request_times[j] - self.request_times[i]

    def by_native_id(self) -> dict[str, Post]:
        return {p.native_id: p for p in self.posts}


def run_cli(args: list[str], home: Path, *, env: dict[str, str] | None = None, timeout: float = 90) -> CrawlResult:
    """Run ``moments crawl ARGS`` in a child process; collect posts (from -o) and stats."""
    out = home / f"out-{time.monotonic_ns()}.jsonl"
    stats_path = out.with_suffix(".stats.json")
    command = [sys.executable, "-m", "moments.cli", "crawl", *args, "-o", str(out), "--stats-json", str(stats_path)]
    child_env = {**os.environ, "MOMENTS_HOME": str(home), "MOMENTS_CRAWL_FAST": "1", **(env or {})}
    started = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, env=child_env, cwd=REPO, timeout=timeout, check=False
    )
    elapsed = time.monotonic() - started
    posts = list(read_posts(out.read_text(encoding="utf-8").splitlines())) if out.exists() else []
    stats = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.exists() else {}
    return CrawlResult(done.returncode, posts, stats, done.stderr, elapsed)


Crawl = Callable[..., CrawlResult]


def write_recording(path: Path, interactions: list[dict[str, Any]]) -> Path:
    """Write a recording file (for tests that vary a fixture)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"interactions": interactions}), encoding="utf-8")
    return path


def load_recording(name: str) -> list[dict[str, Any]]:
    """The interactions of a recorded fixture, to vary in a test."""
    data: list[dict[str, Any]] = json.loads((RECORDINGS / name).read_text(encoding="utf-8"))["interactions"]
    return data
