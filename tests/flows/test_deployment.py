"""Deployments: the schedules ``flows.deploy`` derives from a config, and ``prefect.yaml``
deployed to a real Prefect server and run by a real ``process`` worker.

The server test starts everything the README's multi-machine setup does, on one machine:
``prefect server start`` (its own PREFECT_HOME), ``prefect work-pool create moments``,
``prefect deploy --all`` from the repository root, ``prefect worker start --pool moments``,
then ``prefect deployment run moments-watch/watch`` and waits for the worker to finish it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from flows.deploy import deployments

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
SERVER_START_TIMEOUT = 120.0
RUN_TIMEOUT = 240.0


# --------------------------------------------------------------------------- without a server


def _write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _schedule(deployment: Any) -> Any:
    assert len(deployment.schedules) == 1
    return deployment.schedules[0].schedule


def test_deployments_take_schedules_from_the_config(tmp_path: Path) -> None:
    config = _write_config(
        tmp_path / "brands.yaml",
        """
schedules:
  watch: {interval: 10m}
  nightly: {cron: "0 2 * * *", timezone: Europe/London}
brands:
  - {name: Slow Brand, watch_interval: 15m}
  - {name: Fast Brand, watch_interval: 5m}
""",
    )
    watch, nightly = deployments(config, store_url="http://es:9200")

    assert (watch.name, watch.flow_name) == ("watch", "moments-watch")
    assert (nightly.name, nightly.flow_name) == ("nightly", "moments-nightly")
    # One schedule serves every brand: the shortest brand interval, not schedules.watch.
    assert _schedule(watch).interval == timedelta(minutes=5)
    cron = _schedule(nightly)
    assert (cron.cron, cron.timezone) == ("0 2 * * *", "Europe/London")
    for deployment in (watch, nightly):
        assert deployment.concurrency_limit == 1
        assert deployment.parameters == {"config_path": str(config), "store_url": "http://es:9200"}


def test_watch_deployment_without_brand_intervals_uses_the_configured_schedule(tmp_path: Path) -> None:
    interval = _write_config(tmp_path / "interval.yaml", "schedules: {watch: {interval: 7m}}\nbrands: [{name: A}]\n")
    assert _schedule(deployments(interval)[0]).interval == timedelta(minutes=7)

    cron = _write_config(
        tmp_path / "cron.yaml",
        "schedules: {watch: {cron: '*/15 * * * *', timezone: America/New_York}}\n"
        "brands: [{name: A, watch_interval: 5m}]\n",
    )
    schedule = _schedule(deployments(cron)[0])
    assert (schedule.cron, schedule.timezone) == ("*/15 * * * *", "America/New_York")


def test_prefect_yaml_matches_the_documented_setup() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    assert spec["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $MOMENTS_REPO }}"}}]
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert by_name["watch"]["entrypoint"] == "flows/flows.py:watch"
    assert by_name["nightly"]["entrypoint"] == "flows/flows.py:nightly"
    for deployment in by_name.values():
        assert deployment["work_pool"]["name"] == "moments"
        assert deployment["concurrency_limit"] == 1
        entrypoint_file = REPO / deployment["entrypoint"].split(":")[0]
        assert entrypoint_file.is_file()


# --------------------------------------------------------------------------- on a real server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def _tail(path: Path, lines: int = 60) -> str:
    if not path.is_file():
        return f"({path.name}: nothing written)"
    return f"--- last lines of {path.name} ---\n" + "\n".join(
        path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    )


@contextmanager
def _background(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess in its own process group, killed with all its children on exit, whatever happens."""
    handle: IO[bytes] = log.open("wb")
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Children that outlive the group leader (uvicorn, flow-run subprocesses) go too.
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        handle.close()


class _Clock:
    def __init__(self) -> None:
        self.start = self.last = time.monotonic()

    def lap(self, what: str) -> None:
        now = time.monotonic()
        print(f"[deployment test] {what}: {now - self.last:.1f}s (total {now - self.start:.1f}s)", flush=True)
        self.last = now


def _cli(args: list[str], env: dict[str, str], timeout: float = 120.0, *, tolerate: str | None = None) -> str:
    result = subprocess.run(
        [PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and tolerate is not None and tolerate in output:
        print(f"[deployment test] prefect {' '.join(args)}: known failure tolerated ({tolerate})", flush=True)
        return output
    assert result.returncode == 0, f"prefect {' '.join(args)} exited {result.returncode}:\n{output}"
    return output


#: prefect 3.8.8 with fastapi 0.154 (requirements.lock): after creating each deployment,
#: `prefect deploy` asks for the pool's online workers with `"limit": null`, which the
#: server rejects (422), so it exits 1 and `--all` stops after the first deployment.
KNOWN_DEPLOY_FAILURE = "/workers/filter' - Response: {'exception_message': 'Invalid request received.'"


def _deploy(name: str, env: dict[str, str]) -> None:
    """``prefect deploy --name NAME`` from the repository root, non-interactive, from prefect.yaml."""
    out = _cli(["--no-prompt", "deploy", "--name", name], env, timeout=180, tolerate=KNOWN_DEPLOY_FAILURE)
    assert "successfully created" in out or "successfully updated" in out, out


@pytest.mark.slow
@pytest.mark.prefect_server
def test_prefect_yaml_deploys_and_a_process_worker_runs_watch(tmp_path: Path) -> None:
    clock = _Clock()
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    home = tmp_path / "moments-home"
    store = tmp_path / "m.db"
    config = _write_config(tmp_path / "brands.yaml", "brands:\n  - name: Quiet Brand\n")  # no sources: no network

    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MOMENTS_"))}
    base.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLI_PROMPT="false",
        PREFECT_LOGGING_LEVEL="INFO",
    )
    server_env = {
        **base,
        "PREFECT_HOME": str(tmp_path / "prefect-server"),
        # Runs are triggered by hand below; scheduled ones would only queue behind them.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    }
    client_env = {
        **base,
        "PREFECT_HOME": str(tmp_path / "prefect-client"),
        "PREFECT_API_URL": api,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "MOMENTS_CONFIG": str(config),
    }
    # The worker's machine: its checkout, its data directory, the shared store. MOMENTS_REPO
    # is unset when deploying, so the pull step keeps its placeholder for the worker.
    worker_env = {**client_env, "MOMENTS_REPO": str(REPO), "MOMENTS_HOME": str(home), "MOMENTS_STORE": str(store)}
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    server_cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]

    with _background(server_cmd, server_env, server_log, tmp_path) as server:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            assert server.poll() is None, f"prefect server exited {server.returncode}\n{_tail(server_log)}"
            try:
                if _get(f"{api}/health", timeout=5) is True:
                    break
            except (OSError, ValueError):
                pass
            assert time.monotonic() < deadline, f"no /api/health after {SERVER_START_TIMEOUT:.0f}s\n{_tail(server_log)}"
            time.sleep(1)
        clock.lap("server healthy")

        _cli(["work-pool", "create", "moments", "--type", "process"], client_env)
        # One by one: see KNOWN_DEPLOY_FAILURE (with it fixed, `prefect deploy --all` does both).
        for name in ("watch", "nightly"):
            _deploy(name, client_env)
        clock.lap("work pool created and prefect.yaml deployed")

        watch = _get(f"{api}/deployments/name/moments-watch/watch")
        nightly = _get(f"{api}/deployments/name/moments-nightly/nightly")
        assert watch["work_pool_name"] == nightly["work_pool_name"] == "moments"
        assert watch["entrypoint"] == "flows/flows.py:watch"
        assert nightly["entrypoint"] == "flows/flows.py:nightly"
        assert [s["schedule"]["interval"] for s in watch["schedules"]] == [600.0]
        assert [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in nightly["schedules"]] == [
            ("0 2 * * *", "UTC")
        ]
        for deployment in (watch, nightly):
            assert (deployment["global_concurrency_limit"] or {}).get("limit") == 1
            # Resolved by `prefect deploy` from the deploying machine's environment...
            assert deployment["parameters"] == {"config_path": str(config)}
            # ...while the checkout's path, unset there, is left for each worker to resolve from its own.
            assert deployment["pull_steps"] == [
                {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $MOMENTS_REPO }}"}}
            ]

        worker_cmd = [PREFECT, "worker", "start", "--pool", "moments"]
        # The worker starts outside the checkout: only the pull step brings a run there.
        with _background(worker_cmd, worker_env, worker_log, tmp_path):
            out = _cli(["deployment", "run", "moments-watch/watch", "--param", "force=true"], client_env)
            match = re.search(r"UUID:\s*([0-9a-f-]{36})", out)
            assert match, out
            run_id = match.group(1)
            clock.lap("flow run created")

            deadline = time.monotonic() + RUN_TIMEOUT
            seen = None
            while True:
                flow_run = _get(f"{api}/flow_runs/{run_id}")
                state = flow_run.get("state") or {}
                if state.get("type") != seen:
                    seen = state.get("type")
                    clock.lap(f"flow run {state.get('type')} ({state.get('name')})")
                if state.get("type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                    break
                assert time.monotonic() < deadline, (
                    f"flow run still {state.get('type')} after {RUN_TIMEOUT:.0f}s\n{_tail(worker_log)}"
                )
                time.sleep(2)

        report = f"state {state}\n{_tail(worker_log)}"
        assert state["type"] == "COMPLETED", report
        assert state["name"] in ("Completed", "Partial"), report
        assert flow_run["parameters"]["force"] is True
        assert flow_run["deployment_id"] == watch["id"]
        # The tick ran with the worker's MOMENTS_* environment: its store and its home.
        assert store.is_file(), report
        assert list((home / "runs").glob("watch-*")), report
        print(f"[deployment test] watch run {run_id}: {state['name']}: {state.get('message')}", flush=True)
    clock.lap("server and worker stopped")
