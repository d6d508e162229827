"""A real, throwaway Elasticsearch for the test suite (``make test``).

Usage::

    python -m search.devserver run -- python -m pytest    # start, run, stop: exit with the command's status
    python -m search.devserver start                      # start in the background, print the URL
    python -m search.devserver status                     # is the background one up?
    python -m search.devserver stop                       # stop it by PID

What it does, and why:

* Fetches the Elasticsearch *integ-test* distribution with Maven
  (``mvn dependency:get``): Maven resolves it through whatever mirror or
  proxy the machine is configured with, so there is no download URL to rot.
* Unzips it once into a cache directory outside the repository and reuses it.
* Elasticsearch refuses to run as root, so under root it creates a system user
  (``moments-es``) and starts the server through ``runuser``.
* It needs Java 21+; the default ``java`` is often older, so ``JAVA_HOME`` and
  ``/usr/lib/jvm`` are searched for the newest suitable runtime.
* Every run gets fresh data, log and config directories and free ports, so
  parallel runs (several developers, CI jobs) never share state.
* The server is stopped by PID (SIGTERM, then SIGKILL after a grace period)
  whatever the command's outcome.

Without Java 21+ or Maven it says how to get them and runs the command without
``MOMENTS_TEST_ES_URL`` (Elasticsearch tests then skip), except under
``CI=true``, where a suite that silently skips its Elasticsearch tests would be a
false pass, so it fails instead.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ES_VERSION = "9.5.2"
ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
MIN_JAVA = 21
ES_USER = "moments-es"
HEAP = "-Xms512m -Xmx512m"
#: Starting takes 20-60 s on a busy 2-core machine; leave room.
START_TIMEOUT_S = float(os.environ.get("MOMENTS_ES_START_TIMEOUT", "180"))
STOP_GRACE_S = 20.0
#: Where Linux distributions and installers put Java runtimes.
JVM_ROOTS = (Path("/usr/lib/jvm"), Path("/usr/java"), Path("/opt/java"))

HOWTO_JAVA = (
    "Elasticsearch needs Java 21 or newer: install one (e.g. `apt-get install openjdk-21-jdk-headless`, "
    "or Temurin 21+ from https://adoptium.net) and/or set JAVA_HOME to it."
)
HOWTO_MAVEN = (
    "Elasticsearch is fetched with Maven: install it (e.g. `apt-get install maven`, or https://maven.apache.org)."
)


class DevServerError(RuntimeError):
    """The server could not be provisioned or started; the message says why and what to do."""


class MissingTool(DevServerError):
    """Java 21+ or Maven is not installed (tests may still run, skipping Elasticsearch)."""


def _say(message: str) -> None:
    print(f"devserver: {message}", file=sys.stderr, flush=True)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# --------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """Where the unpacked distribution and run directories live (never inside the repo).

    ``$MOMENTS_CACHE_DIR`` wins. As root, ``/var/cache/moments``: root's home is
    usually mode 700, which the unprivileged server user could not even enter.
    """
    if os.environ.get("MOMENTS_CACHE_DIR"):
        return Path(os.environ["MOMENTS_CACHE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/cache/moments")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moments"


def state_file() -> Path:
    """Where ``start`` records the background server for ``status`` and ``stop``."""
    return cache_dir() / "devserver.json"


# --------------------------------------------------------------------------- tools


def java_version(java_home: Path) -> int | None:
    """The feature version (17, 21, 25 ...) of the runtime at ``java_home``, or ``None``."""
    java = java_home / "bin" / "java"
    if not os.access(java, os.X_OK):
        return None
    release = java_home / "release"
    text = ""
    if release.is_file():
        text = release.read_text(errors="replace")
        match = re.search(r'^JAVA_VERSION="(\d+)', text, re.MULTILINE)
        if match:
            return int(match[1])
    try:
        text = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(?:1\.)?(\d+)', text)
    return int(match[1]) if match else None


def find_java() -> Path:
    """A Java 21+ home: ``$ES_JAVA_HOME``, ``$JAVA_HOME``, else the newest under ``/usr/lib/jvm``.

    Raises:
        MissingTool: No suitable runtime was found.
    """
    for variable in ("ES_JAVA_HOME", "JAVA_HOME"):
        configured = os.environ.get(variable)
        if configured and (java_version(Path(configured)) or 0) >= MIN_JAVA:
            return Path(configured)
    found: list[tuple[int, Path]] = []
    for root in JVM_ROOTS:
        if root.is_dir():
            for home in root.iterdir():
                if home.is_symlink():
                    continue  # aliases of real homes; avoid listing a runtime twice
                version = java_version(home)
                if version and version >= MIN_JAVA:
                    found.append((version, home))
    if not found:
        raise MissingTool(f"no Java {MIN_JAVA}+ found in $JAVA_HOME or /usr/lib/jvm. {HOWTO_JAVA}")
    return max(found)[1]


def maven_repo() -> Path:
    """Maven's local repository (``$MOMENTS_M2_REPO`` or ``~/.m2/repository``)."""
    return Path(os.environ.get("MOMENTS_M2_REPO") or Path.home() / ".m2" / "repository")


def fetch_distribution(version: str) -> Path:
    """Resolve the integ-test zip with Maven and return its path in the local repository.

    Raises:
        MissingTool: Maven is not installed.
        DevServerError: Maven could not resolve the artifact.
    """
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingTool(f"`mvn` is not on PATH. {HOWTO_MAVEN}")
    command = [
        mvn,
        "-q",
        "-B",
        "dependency:get",
        f"-Dartifact={ARTIFACT.format(version=version)}",
        "-Dtransitive=false",
    ]
    if os.environ.get("MOMENTS_M2_REPO"):
        command.append(f"-Dmaven.repo.local={maven_repo()}")
    _say(f"resolving Elasticsearch {version} with Maven")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise DevServerError(f"Maven could not fetch {ARTIFACT.format(version=version)}:\n{tail}")
    zip_path = (
        maven_repo()
        / "org/elasticsearch/distribution/integ-test-zip/elasticsearch"
        / version
        / f"elasticsearch-{version}.zip"
    )
    if not zip_path.is_file():
        raise DevServerError(f"Maven reported success but {zip_path} is missing (set MOMENTS_M2_REPO?)")
    return zip_path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between concurrent runs (two `make test` unpacking at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _unzip(zip_path: Path, target: Path) -> None:
    # zipfile drops permission bits; restore them or bin/elasticsearch is not executable.
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            extracted = Path(archive.extract(info, target))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                extracted.chmod(mode)


def install(version: str = ES_VERSION) -> Path:
    """The unpacked distribution in the cache, fetching and unzipping it the first time.

    Returns:
        The Elasticsearch home (containing ``bin/elasticsearch``).
    """
    cache = cache_dir()
    home = cache / f"elasticsearch-{version}"
    marker = home / ".moments-complete"
    with _locked(cache / "install.lock"):
        if marker.is_file():
            return home
        zip_path = fetch_distribution(version)
        _say(f"unpacking {zip_path.name} into {cache}")
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
        try:
            _unzip(zip_path, staging)
            unpacked = staging / f"elasticsearch-{version}"
            if not (unpacked / "bin" / "elasticsearch").is_file():
                raise DevServerError(f"{zip_path} does not contain elasticsearch-{version}/bin/elasticsearch")
            if home.exists():
                shutil.rmtree(home)  # a half-finished earlier unpack
            unpacked.rename(home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        marker.touch()
    return home


# --------------------------------------------------------------------------- user


def ensure_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run Elasticsearch as, created if missing; ``None`` when not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(ES_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise DevServerError(f"running as root, and `useradd` is missing to create the {ES_USER!r} user")
    _say(f"creating system user {ES_USER!r} (Elasticsearch refuses to run as root)")
    result = subprocess.run(
        [
            useradd,
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            ES_USER,
        ],
        capture_output=True,
        text=True,
    )
    try:
        return pwd.getpwnam(ES_USER)  # also fine if a parallel run created it first
    except KeyError:
        raise DevServerError(f"could not create user {ES_USER!r}: {result.stderr.strip()}") from None


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    if (
        path.stat().st_uid == user.pw_uid
        and (path / "config").exists()
        and (path / "config").stat().st_uid == user.pw_uid
    ):
        return
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)
    os.lchown(path, user.pw_uid, user.pw_gid)


# --------------------------------------------------------------------------- server


@dataclass
class Server:
    """A started Elasticsearch: where it answers and how to stop it."""

    url: str
    pid: int
    pid_file: str
    run_dir: str
    console_log: str

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's console output (for error messages)."""
        path = Path(self.console_log)
        if not path.is_file():
            return "(no output)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(no output yet)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our exited child not yet reaped) counts as gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (Linux ``/proc``; empty elsewhere)."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat_file.read_text().rsplit(") ", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat_file.parent.name))
    return members


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health?wait_for_status=yellow&timeout=2s", timeout=5) as response:
            body = json.load(response)
    except (OSError, urllib.error.URLError, ValueError):
        return False
    return body.get("status") in ("yellow", "green") and not body.get("timed_out")


def start(version: str = ES_VERSION) -> Server:
    """Start a fresh single-node Elasticsearch on free loopback ports and wait until it is healthy.

    Args:
        version: The distribution version to fetch.

    Raises:
        MissingTool: Java 21+ or Maven is missing.
        DevServerError: It did not become healthy (the message has the log tail).
    """
    java_home = find_java()
    es_home = install(version)
    user = ensure_user()
    runs = cache_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    prune_runs()
    run_dir = Path(tempfile.mkdtemp(prefix=f"es-{time.strftime('%Y%m%dT%H%M%S')}-", dir=runs))
    # A private config copy: the server writes its keystore there, and parallel runs must not share it.
    shutil.copytree(es_home / "config", run_dir / "config")
    for name in ("data", "logs", "tmp"):
        (run_dir / name).mkdir()
    run_dir.chmod(0o755)
    if user is not None:
        _chown_tree(es_home, user)
        _chown_tree(run_dir, user)

    return _launch(version, es_home, java_home, user, run_dir, _free_port())


def restart(server: Server, version: str = ES_VERSION) -> Server:
    """Start a stopped server again on the same port and data (to test an outage and recovery)."""
    if _alive(server.pid):
        raise DevServerError(f"Elasticsearch at {server.url} is still running (pid {server.pid})")
    port = int(server.url.rsplit(":", 1)[1])
    return _launch(version, install(version), find_java(), ensure_user(), Path(server.run_dir), port)


def _launch(
    version: str, es_home: Path, java_home: Path, user: pwd.struct_passwd | None, run_dir: Path, http_port: int
) -> Server:
    transport_port = _free_port()
    url = f"http://127.0.0.1:{http_port}"
    pid_file = run_dir / "elasticsearch.pid"
    command = [
        str(es_home / "bin" / "elasticsearch"),
        "-p",
        str(pid_file),
        "-Ediscovery.type=single-node",
        "-Enetwork.host=127.0.0.1",
        f"-Ehttp.port={http_port}",
        f"-Etransport.port={transport_port}",
        f"-Ecluster.name=moments-test-{os.getpid()}",
        f"-Epath.data={run_dir / 'data'}",
        f"-Epath.logs={run_dir / 'logs'}",
        # The integ-test zip ships x-pack core and security; tests talk plain HTTP without users.
        "-Expack.security.enabled=false",
        # A nearly full developer disk must not turn the test index read-only.
        "-Ecluster.routing.allocation.disk.threshold_enabled=false",
    ]
    if user is not None:
        runuser = shutil.which("runuser")
        command = (
            [runuser, "-u", ES_USER, "--", *command]
            if runuser
            else ["su", "-s", "/bin/sh", ES_USER, "-c", shlex.join(command)]
        )
    env = {
        **os.environ,
        "ES_JAVA_HOME": str(java_home),
        "ES_JAVA_OPTS": HEAP,
        "ES_PATH_CONF": str(run_dir / "config"),
        "ES_TMPDIR": str(run_dir / "tmp"),
    }
    env.pop("JAVA_TOOL_OPTIONS", None)  # would be echoed into every server log line
    console_log = run_dir / "console.log"
    if console_log.exists():  # a restart: keep the first run's output for the record
        console_log.rename(run_dir / f"console-{time.strftime('%H%M%S')}.log")
    _say(f"starting Elasticsearch {version} on {url} (Java {java_version(java_home)} at {java_home})")
    with console_log.open("wb") as log_handle:
        process = subprocess.Popen(
            command,
            cwd=es_home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            # Its own session and process group: `stop` signals the whole tree, it outlives
            # `start`, and a Ctrl-C in the terminal reaches only us (we then stop it cleanly).
            start_new_session=True,
        )
    server = Server(url, process.pid, str(pid_file), str(run_dir), str(console_log))
    started = time.monotonic()
    try:
        while time.monotonic() - started < START_TIMEOUT_S:
            if process.poll() is not None:
                break
            if _healthy(url):
                _say(f"Elasticsearch is up after {time.monotonic() - started:.0f}s")
                return server
            time.sleep(1)
    except BaseException:
        stop(server)  # Ctrl-C while waiting: never leave a server behind
        raise
    failure = (
        f"exited with status {process.returncode}"
        if process.poll() is not None
        else f"not healthy after {START_TIMEOUT_S:.0f}s"
    )
    tail = server.log_tail()
    stop(server)
    raise DevServerError(f"Elasticsearch {failure}; last lines of its log:\n{tail}")


def prune_runs(max_age_s: float = 24 * 3600) -> None:
    """Delete run directories left by killed runs (older than a day, server gone)."""
    runs = cache_dir() / "runs"
    if not runs.is_dir():
        return
    now = time.time()
    for run_dir in runs.iterdir():
        with contextlib.suppress(OSError, ValueError):
            if now - run_dir.stat().st_mtime < max_age_s:
                continue
            pid_file = run_dir / "elasticsearch.pid"
            if pid_file.is_file() and _alive(int(pid_file.read_text().strip())):
                continue
            shutil.rmtree(run_dir, ignore_errors=True)


def stop(server: Server, *, keep: bool = False) -> None:
    """Stop the server by PID: SIGTERM to its process group and server PID, SIGKILL after a grace period.

    Args:
        server: What :func:`start` returned.
        keep: Keep the run directory (data and logs) instead of deleting it.
    """
    pids = {server.pid, *_group_members(server.pid)}
    with contextlib.suppress(OSError, ValueError):
        pids.add(int(Path(server.pid_file).read_text().strip()))

    def signal_all(sig: signal.Signals) -> None:
        # The group reaches runuser, the launcher and the server JVM; the PID file covers
        # a server that moved to its own group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server.pid, sig)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def running() -> bool:
        return any(_alive(pid) for pid in pids | set(_group_members(server.pid)))

    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    if running():
        _say(f"Elasticsearch did not stop within {STOP_GRACE_S:.0f}s; killing it")
        signal_all(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while running() and time.monotonic() < deadline:
            time.sleep(0.2)
    if not keep:
        shutil.rmtree(server.run_dir, ignore_errors=True)


# --------------------------------------------------------------------------- commands


def run(command: Sequence[str], version: str = ES_VERSION) -> int:
    """Start Elasticsearch, run ``command`` with ``MOMENTS_TEST_ES_URL`` set, stop it; the command's status.

    An already set ``MOMENTS_TEST_ES_URL`` (your own server) is used as is.
    """
    if not command:
        _say("nothing to run: use `python -m search.devserver run -- CMD ...`")
        return 2
    if os.environ.get("MOMENTS_TEST_ES_URL"):
        _say(f"using MOMENTS_TEST_ES_URL={os.environ['MOMENTS_TEST_ES_URL']} as given")
        return subprocess.call(list(command))
    try:
        server = start(version)
    except MissingTool as exc:
        if _in_ci():
            _say(f"{exc}\nCI=true: refusing to run the suite without Elasticsearch.")
            return 1
        _say(f"{exc}\nRunning without Elasticsearch: its tests will be skipped.")
        env = {k: v for k, v in os.environ.items() if k != "MOMENTS_TEST_ES_URL"}
        return subprocess.call(list(command), env=env)

    # SIGTERM (a CI job cancelled) must still reach the `finally` below.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return subprocess.call(list(command), env={**os.environ, "MOMENTS_TEST_ES_URL": server.url})
    except KeyboardInterrupt:
        return 130
    finally:
        _say("stopping Elasticsearch")
        stop(server)
        signal.signal(signal.SIGTERM, previous)


def _load_state() -> Server | None:
    try:
        return Server(**json.loads(state_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def cmd_start(version: str) -> int:
    """``start``: a background server, recorded for ``status`` and ``stop``."""
    current = _load_state()
    if current is not None and _alive(current.pid) and _healthy(current.url):
        print(f"MOMENTS_TEST_ES_URL={current.url}")
        return 0
    server = start(version)
    state_file().write_text(json.dumps(asdict(server)))
    print(f"MOMENTS_TEST_ES_URL={server.url}")
    _say(f"started (pid {server.pid}); stop it with `python -m search.devserver stop`")
    return 0


def cmd_stop() -> int:
    """``stop``: stop the background server, if any."""
    server = _load_state()
    if server is None:
        _say("no background Elasticsearch recorded")
        return 0
    stop(server)
    state_file().unlink(missing_ok=True)
    _say(f"stopped Elasticsearch (pid {server.pid})")
    return 0


def cmd_status() -> int:
    """``status``: 0 and the URL when the background server is healthy, else 1."""
    server = _load_state()
    if server is None or not _alive(server.pid):
        print("not running")
        return 1
    healthy = _healthy(server.url)
    print(f"{'running' if healthy else 'unhealthy'}: MOMENTS_TEST_ES_URL={server.url} (pid {server.pid})")
    return 0 if healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m search.devserver``."""
    parser = argparse.ArgumentParser(
        prog="python -m search.devserver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", default=ES_VERSION, help=f"Elasticsearch version (default: {ES_VERSION})")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run_parser = sub.add_parser("run", help="start, run a command with MOMENTS_TEST_ES_URL set, stop")
    run_parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    sub.add_parser("start", help="start in the background and print MOMENTS_TEST_ES_URL=...")
    sub.add_parser("stop", help="stop the background server")
    sub.add_parser("status", help="is the background server healthy?")
    args = parser.parse_args(argv)
    try:
        if args.action == "run":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            return run(command, args.version)
        if args.action == "start":
            return cmd_start(args.version)
        if args.action == "stop":
            return cmd_stop()
        return cmd_status()
    except DevServerError as exc:
        _say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
