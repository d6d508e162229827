"""``moments triage --workers 2``: two app processes on one port and one store, both serving."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from moments.accounts import User
from moments.records import utc_now
from search.backends import open_store
from triage.accounts import hash_password


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_two_workers_serve_the_app_and_share_users_through_the_store(tmp_path: Path) -> None:
    store_path = tmp_path / "moments.db"
    port = _free_port()
    env = {**os.environ, "MOMENTS_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "moments.cli", "triage", "--store", str(store_path), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", "2"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(0.3)
        # A user added after the workers started is known to whichever worker answers.
        with open_store(str(store_path)) as store:
            now = utc_now()
            store.put_user(
                User(name="dana", role="lead", password_hash=hash_password("a long enough password"), created_at=now)
            )
        for _ in range(6):  # several connections, so both workers answer some
            with httpx.Client(base_url=url, timeout=10) as client:
                assert client.get("/api/flags").status_code == 401
                login = client.post("/api/login", json={"name": "dana", "password": "a long enough password"})
                assert login.status_code == 200, login.text
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
    assert output.count("Started server process") == 2, output
