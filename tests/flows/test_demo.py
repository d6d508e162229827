"""`moments demo` end to end, as a user runs it: twice, then a search of its store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAST_LINE = re.compile(r"^demo: (\d+) posts, (\d+) flags$")


def _moments(home: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MOMENTS_HOME": str(home), "CI": os.environ.get("CI", ""), "COLUMNS": "160"}
    env.pop("MOMENTS_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "moments.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reruns_without_duplicates(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = _moments(home, "demo")
    assert first.returncode == 0, first.stderr[-3000:]
    last = first.stdout.strip().splitlines()[-1]
    match = LAST_LINE.match(last)
    assert match, f"last line was {last!r}"
    posts, flags = int(match.group(1)), int(match.group(2))
    assert posts >= 50
    assert flags >= 1
    # The flag table and the scorecard are part of what the demo shows.
    assert "Open flags" in first.stdout
    assert "Moments of truth by touchpoint" in first.stdout

    second = _moments(home, "demo")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.strip().splitlines()[-1] == last

    found = _moments(home, "search", "delay", "--json")
    assert found.returncode == 0, found.stderr[-2000:]
    results = json.loads(found.stdout)
    assert results, "the demo corpus has posts about delays"
    for post in results:
        haystack = f"{post.get('title') or ''} {post['text']}".lower()
        assert "delay" in haystack
        assert "Northwind Air" in post["brand"]
        assert post["classification"] is not None
