"""The recording server: matching, response sequences, ``{base_url}``, robots.txt, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from crawl_helpers import REPO, write_recording

from crawlers.mockserver import serve_recordings


def _get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    interactions: list[dict[str, Any]] = [
        {"request": {"path": "/items"}, "response": {"json": {"which": "any"}}},
        {"request": {"path": "/items", "query": {"page": "2"}}, "response": {"json": {"which": "page2"}}},
        {
            "request": {"path": "/items", "query": {"page": "2", "sort": "new"}},
            "response": {
                "headers": {"Link": '<{base_url}/items?page=3>; rel="next"'},
                "json": {"which": "page2-new", "self": "{base_url}/items"},
            },
        },
        {"request": {"path": "/multi", "query": {"a": ["1", "2"]}}, "response": {"json": {"which": "both"}}},
        {
            "request": {"path": "/flaky"},
            "responses": [{"status": 503, "body": "busy"}, {"status": 200, "body": "ok", "headers": {"X": "y"}}],
        },
        {"request": {"method": "POST", "path": "/login"}, "response": {"json": {"token": "t"}}},
    ]
    return write_recording(tmp_path / "rec" / "server.json", interactions)


def test_most_specific_match_wins_and_extra_params_are_ignored(recording: Path) -> None:
    with serve_recordings(recording) as base:
        assert json.loads(_get(f"{base}/items?limit=40")[2]) == {"which": "any"}
        assert json.loads(_get(f"{base}/items?page=2&x=1")[2]) == {"which": "page2"}
        status, headers, body = _get(f"{base}/items?sort=new&page=2")
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"which": "page2-new", "self": f"{base}/items"}
        assert headers["Link"] == f'<{base}/items?page=3>; rel="next"'
        assert json.loads(_get(f"{base}/multi?a=1&a=2")[2]) == {"which": "both"}
        assert _get(f"{base}/multi?a=1")[0] == 404


def test_response_sequence_repeats_the_last(recording: Path) -> None:
    with serve_recordings(recording) as base:
        assert [_get(f"{base}/flaky")[:1] for _ in range(3)] == [(503,), (200,), (200,)]


def test_unmatched_is_404_json_and_robots_allows_all(recording: Path) -> None:
    with serve_recordings(recording) as base:
        status, _, body = _get(f"{base}/nothing/here")
        assert status == 404 and json.loads(body)["error"] == "no recorded response"
        assert _get(f"{base}/robots.txt")[0] == 404
        request = urllib.request.Request(f"{base}/login", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read()) == {"token": "t"}
        assert _get(f"{base}/login")[0] == 404  # method must match


def test_command_line_prints_base_url(recording: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "crawlers.mockserver", str(recording.parent)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        base = process.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:")
        assert json.loads(_get(f"{base}/items")[2]) == {"which": "any"}
    finally:
        process.terminate()
        process.wait(timeout=5)
