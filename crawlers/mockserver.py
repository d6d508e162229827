"""A local HTTP server that replays recorded platform responses.

The spiders take a base URL (the service root) and request documented paths
under it, so this server can stand in for Mastodon, Bluesky, Reddit and the
rest in tests, in the offline demo and in the benchmark.

Recording format: JSON files, each ``{"interactions": [...]}``::

    {"interactions": [
      {"request": {"method": "GET", "path": "/api/v1/timelines/tag/northwindair",
                   "query": {"max_id": "1090"}},
       "response": {"status": 200,
                    "headers": {"Content-Type": "application/json",
                                "Link": "<{base_url}/api/v1/timelines/tag/northwindair?max_id=1080>; rel=\\"next\\""},
                    "json": [...]}}
    ]}

* A response carries ``"json"`` (serialised for you, ``Content-Type`` defaults
  to ``application/json``) or ``"body"`` (raw text, served as is).
* ``"responses": [r1, r2, ...]`` instead of ``"response"`` serves them in
  order, the last one repeating (429-then-200, 500-then-200).
* Matching: method and path exact; every recorded query parameter must equal
  the request's (a list value matches a repeated parameter); extra request
  parameters are ignored; the most specific interaction (most recorded
  parameters) wins; no match is a 404 JSON error. A request may also record
  ``"headers"`` (e.g. ``{"Authorization": "Bearer t"}``) that must be sent,
  names case-insensitive, to test authenticated calls.
* The literal ``{base_url}`` in header values and body/json strings becomes the
  server's root, so recorded ``Link`` headers and URLs point back here.
* ``/robots.txt`` is served from a recording if there is one, else 404 (which
  robots.txt parsers read as "allow all").

Use it as ``with serve_recordings(path) as base_url: ...`` or from a shell:
``python -m crawlers.mockserver DIR [--port N]`` (prints the base URL).

Changing the answers of a running server (thread-safe, e.g. engagement that
climbs between two polls)::

    with running_server(path) as server:       # a MockServer (RecordingServer)
        crawl(..., base_url=server.base_url)
        server.replace(new_recording)            # answer from these from now on
        server.add({"request": {...}, "response": {...}})  # or add/override some
        crawl(..., base_url=server.base_url)

:meth:`RecordingServer.replace` and :meth:`RecordingServer.add` take what a
recording holds: a file or directory path (or several), a ``{"interactions":
[...]}`` dict, one interaction dict, or a list of interaction dicts. Replacing
starts every response sequence afresh; an added interaction wins over an
existing one that is as specific. A request being answered sees the old or the
new interactions, never a mix. ``running_server()`` without recordings starts
an empty server (every request a 404) to fill with ``add``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("moments.mockserver")

BASE_URL_TOKEN = "{base_url}"


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Interaction:
    """One recorded request and the response(s) served for it."""

    method: str
    path: str
    query: dict[str, list[str]]
    responses: list[dict[str, Any]]
    headers: dict[str, str] = field(default_factory=dict)
    served: int = 0
    rendered: list[_Response] = field(default_factory=list)

    def matches(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str] | None = None
    ) -> bool:
        """Whether a request is answered by this interaction."""
        if method != self.method or path != self.path:
            return False
        sent = headers or {}
        if any(sent.get(name) != value for name, value in self.headers.items()):
            return False
        return all(query.get(key) == values for key, values in self.query.items())


def _substitute(value: Any, base_url: str) -> Any:
    """Replace ``{base_url}`` in every string inside a JSON value."""
    if isinstance(value, str):
        return value.replace(BASE_URL_TOKEN, base_url)
    if isinstance(value, list):
        return [_substitute(v, base_url) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, base_url) for k, v in value.items()}
    return value


def _render(spec: dict[str, Any], base_url: str) -> _Response:
    """Turn a recorded response into status, headers and bytes (done once, at start)."""
    status = int(spec.get("status", 200))
    headers: list[tuple[str, str]] = []
    raw_headers = spec.get("headers") or {}
    for name, value in raw_headers.items():
        values = value if isinstance(value, list) else [value]
        headers.extend((name, str(v).replace(BASE_URL_TOKEN, base_url)) for v in values)
    if "json" in spec:
        body = json.dumps(_substitute(spec["json"], base_url)).encode("utf-8")
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", "application/json"))
    else:
        text = spec.get("body", "")
        body = text.replace(BASE_URL_TOKEN, base_url).encode("utf-8")
    return _Response(status, headers, body)


def _as_query(raw: dict[str, Any] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in (raw or {}).items():
        out[key] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return out


def parse_interaction(item: dict[str, Any]) -> Interaction:
    """One recorded interaction (``{"request": ..., "response"|"responses": ...}``)."""
    request = item["request"]
    responses = item.get("responses") or [item["response"]]
    return Interaction(
        method=request.get("method", "GET").upper(),
        path=unquote(request["path"]),
        query=_as_query(request.get("query")),
        responses=responses,
        headers={k.lower(): str(v) for k, v in (request.get("headers") or {}).items()},
    )


def load_interactions(sources: Iterable[Path]) -> list[Interaction]:
    """Read every recording file (``*.json``, recursively for directories).

    Args:
        sources: Recording files or directories holding them.

    Returns:
        The interactions in file order.
    """
    interactions: list[Interaction] = []
    for source in sources:
        files = sorted(source.rglob("*.json")) if source.is_dir() else [source]
        for path in files:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or "interactions" not in data:
                log.debug("skipping %s: not a recording", path)
                continue
            interactions.extend(parse_interaction(item) for item in data["interactions"])
    return interactions


_Recording: TypeAlias = str | Path | dict[str, Any] | Interaction
#: What :meth:`RecordingServer.replace` and :meth:`RecordingServer.add` take.
Recordings: TypeAlias = _Recording | Iterable[_Recording]


def as_interactions(recordings: Recordings | None) -> list[Interaction]:
    """Interactions from paths, recording dicts, interaction dicts or :class:`Interaction` objects.

    Raises:
        TypeError: Something else.
    """
    if recordings is None:
        return []
    if isinstance(recordings, Interaction):
        return [recordings]
    if isinstance(recordings, str | Path):
        return load_interactions([Path(recordings)])
    if isinstance(recordings, dict):
        if "interactions" in recordings:
            return [parse_interaction(item) for item in recordings["interactions"]]
        if "request" in recordings:
            return [parse_interaction(recordings)]
        raise TypeError("a recording dict holds 'interactions', or is one interaction with a 'request'")
    if isinstance(recordings, Iterable):
        return [interaction for item in recordings for interaction in as_interactions(item)]
    raise TypeError(f"not recordings: {type(recordings).__name__}")


class RecordingServer(ThreadingHTTPServer):
    """A threaded HTTP server that answers from recorded interactions.

    What it answers can be changed while it runs, from any thread:
    :meth:`replace` and :meth:`add` (see the module docstring).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, interactions: Recordings | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.base_url = f"http://{host}:{self.server_address[1]}"
        self.lock = threading.Lock()
        self.request_log: list[str] = []
        self.request_times: list[float] = []  # time.monotonic() of each request, for timing tests
        # Index by (method, path): the benchmark corpus has hundreds of pages.
        self.index: dict[tuple[str, str], list[Interaction]] = self._indexed(as_interactions(interactions))

    def _indexed(self, interactions: list[Interaction]) -> dict[tuple[str, str], list[Interaction]]:
        """Rendered for this server's base URL and indexed by (method, path)."""
        index: dict[tuple[str, str], list[Interaction]] = {}
        for interaction in interactions:
            interaction.rendered = [_render(spec, self.base_url) for spec in interaction.responses]
            index.setdefault((interaction.method, interaction.path), []).append(interaction)
        return index

    def replace(self, recordings: Recordings) -> None:
        """Answer from these recordings from now on, instead of the current ones (thread-safe).

        Response sequences start afresh; the request log is kept.
        """
        index = self._indexed(as_interactions(recordings))
        with self.lock:
            self.index = index

    def add(self, recordings: Recordings) -> None:
        """Answer from these recordings too (thread-safe); they win over ones as specific."""
        added = self._indexed(as_interactions(recordings))
        with self.lock:
            index = {key: list(items) for key, items in self.index.items()}
            for key, items in added.items():
                index[key] = [*items, *index.get(key, [])]
            self.index = index

    def answer(self, method: str, raw_path: str, headers: dict[str, str] | None = None) -> _Response:
        """Find the response for a request (404 JSON when nothing was recorded)."""
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        with self.lock:
            candidates = [i for i in self.index.get((method, path), []) if i.matches(method, path, query, headers)]
            self.request_log.append(f"{method} {raw_path}")
            self.request_times.append(time.monotonic())
            if not candidates:
                if path == "/robots.txt":
                    return _Response(404, [("Content-Type", "text/plain")], b"")
                body = json.dumps({"error": "no recorded response", "method": method, "path": raw_path})
                return _Response(404, [("Content-Type", "application/json")], body.encode())
            # The first of the most specific: file order, and added ones before older ones.
            best = max(candidates, key=lambda i: len(i.query) + len(i.headers))
            response = best.rendered[min(best.served, len(best.rendered) - 1)]
            best.served += 1
            return response


#: The name tests and tools use for the server :func:`running_server` yields.
MockServer = RecordingServer


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive: Scrapy reuses connections, and so should the stand-in.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms a response.
    disable_nagle_algorithm = True
    server: RecordingServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        response = self.server.answer(self.command, self.path, headers)
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = _serve
    do_POST = _serve
    do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


@contextmanager
def running_server(
    recordings: Recordings | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RecordingServer]:
    """Like :func:`serve_recordings`, but yields the server itself.

    It has ``base_url``, ``request_log``, ``request_times``, and
    :meth:`~RecordingServer.replace` / :meth:`~RecordingServer.add` to change
    its answers while it runs. ``recordings`` may be anything those take, or
    ``None`` for an empty server.
    """
    server = RecordingServer(recordings, host, port)
    thread = threading.Thread(target=server.serve_forever, name="moments-mockserver", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def serve_recordings(recordings: Recordings, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve recordings on a background thread for the duration of a ``with`` block.

    Args:
        recordings: A recording file or directory, or several (or recording dicts, see
            :func:`as_interactions`).
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.

    Yields:
        The server's base URL, e.g. ``http://127.0.0.1:54321``.
    """
    with running_server(recordings, host=host, port=port) as server:
        yield server.base_url


def main(argv: list[str] | None = None) -> int:
    """``python -m crawlers.mockserver DIR [--port N]``: serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m crawlers.mockserver",
        description="Serve recorded platform responses so spiders can crawl offline.",
        epilog="example: python -m crawlers.mockserver tests/crawlers/recordings/mastodon --port 8765",
    )
    parser.add_argument("recordings", nargs="+", type=Path, help="recording files or directories")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    args = parser.parse_args(argv)
    server = RecordingServer(load_interactions(args.recordings), args.host, args.port)
    print(server.base_url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
