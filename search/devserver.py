"""A real, throwaway Elasticsearch for the test suite (``make test``).

Usage::

    python -m search.devserver run -- python -m pytest    # start, run, stop: exit with the command's status
    python -m search.devserver start                      # start in the background, print the URL
    python -m search.devserver status                     # is the background one up?
    python -m search.devserver stop                       # stop it by PID
    python -m search.devserver cluster --nodes 2          # a 2-node cluster in the foreground, Ctrl-C stops it

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

A cluster (:func:`start_cluster`, for the replica and failover test) is N such
servers on loopback, each with its own data and log directories, one
``cluster.name``, every transport port in ``discovery.seed_hosts``, and node 1
alone in ``cluster.initial_master_nodes``: node 1 bootstraps and is elected
master, the others join it. With two master-eligible nodes the voting
configuration stays at one node (Elasticsearch keeps it odd), so stopping the
elected master stops the cluster, while any *other* node can be stopped and
restarted freely: :meth:`Cluster.non_master` picks such a node by asking
``_cat/master``. (A third, voting-only node would survive the master's loss too,
but costs another JVM on a 2-core machine; the test does not need it.)

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
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ES_VERSION = "9.5.2"
ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
MIN_JAVA = 21
ES_USER = "moments-es"
HEAP = "-Xms512m -Xmx512m"
#: Per node of a cluster: several JVMs share the machine, and a test index is tiny.
CLUSTER_HEAP = "-Xms384m -Xmx384m"
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
    #: Cluster nodes only: the transport port the other nodes' ``discovery.seed_hosts`` name,
    #: kept across a restart, and the node's own settings (``-E`` arguments) to start it with again.
    transport_port: int | None = None
    node_settings: list[str] = field(default_factory=list)

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
    prune_runs()
    run_dir = _new_run_dir(es_home, user)
    return _launch(version, es_home, java_home, user, run_dir, _free_port())


def _new_run_dir(es_home: Path, user: pwd.struct_passwd | None, label: str = "") -> Path:
    """A fresh run directory (config copy, data, logs, tmp) under the cache, owned by the server user."""
    runs = cache_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"es-{time.strftime('%Y%m%dT%H%M%S')}-{label}", dir=runs))
    # A private config copy: the server writes its keystore there, and parallel runs must not share it.
    shutil.copytree(es_home / "config", run_dir / "config")
    for name in ("data", "logs", "tmp"):
        (run_dir / name).mkdir()
    run_dir.chmod(0o755)
    if user is not None:
        _chown_tree(es_home, user)
        _chown_tree(run_dir, user)
    return run_dir


def restart(server: Server, version: str = ES_VERSION) -> Server:
    """Start a stopped server again on the same port and data (to test an outage and recovery)."""
    if _alive(server.pid):
        raise DevServerError(f"Elasticsearch at {server.url} is still running (pid {server.pid})")
    port = int(server.url.rsplit(":", 1)[1])
    if not server.node_settings:
        return _launch(version, install(version), find_java(), ensure_user(), Path(server.run_dir), port)
    # A cluster node comes back on its old transport port (the others' seed hosts name it),
    # without the bootstrap setting: it rejoins the cluster its data belongs to.
    return _launch(
        version,
        install(version),
        find_java(),
        ensure_user(),
        Path(server.run_dir),
        port,
        transport_port=server.transport_port,
        node_settings=server.node_settings,
        heap=CLUSTER_HEAP,
    )


def _launch(
    version: str,
    es_home: Path,
    java_home: Path,
    user: pwd.struct_passwd | None,
    run_dir: Path,
    http_port: int,
    *,
    transport_port: int | None = None,
    node_settings: Sequence[str] | None = None,
    first_start_settings: Sequence[str] = (),
    heap: str = HEAP,
) -> Server:
    """Start one server and wait until it answers healthy.

    Without ``node_settings`` it is a single-node server. With them (a cluster node:
    ``cluster.name``, ``node.name``, ``discovery.seed_hosts``) they replace the
    single-node discovery and are recorded in the :class:`Server` for a restart;
    ``first_start_settings`` (the bootstrap's ``cluster.initial_master_nodes``) are
    passed this once only.
    """
    cluster_node = node_settings is not None
    if transport_port is None:
        transport_port = _free_port()
    url = f"http://127.0.0.1:{http_port}"
    pid_file = run_dir / "elasticsearch.pid"
    command = [
        str(es_home / "bin" / "elasticsearch"),
        "-p",
        str(pid_file),
        *(
            [*node_settings, *first_start_settings]
            if node_settings is not None
            else ["-Ediscovery.type=single-node", f"-Ecluster.name=moments-test-{os.getpid()}"]
        ),
        "-Enetwork.host=127.0.0.1",
        f"-Ehttp.port={http_port}",
        f"-Etransport.port={transport_port}",
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
        "ES_JAVA_OPTS": heap,
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
    if cluster_node:
        server.transport_port = transport_port
        server.node_settings = list(node_settings or ())
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


# --------------------------------------------------------------------------- cluster


def _get_json(url: str, timeout: float = 30) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


@dataclass
class Cluster:
    """A started N-node cluster on loopback: its nodes in order (node 1 bootstrapped it)."""

    name: str
    nodes: list[Server]

    @property
    def urls(self) -> list[str]:
        """Every node's HTTP URL, node 1 first."""
        return [node.url for node in self.nodes]

    def node_names(self) -> list[str]:
        """``node.name`` of each node (``node-1`` ...), in order."""
        return [f"node-{i}" for i in range(1, len(self.nodes) + 1)]

    def master(self) -> int:
        """Index in :attr:`nodes` of the elected master, asked of any running node (``_cat/master``)."""
        last: Exception | None = None
        for node in self.nodes:
            if not _alive(node.pid):
                continue
            try:
                answer = _get_json(f"{node.url}/_cat/master?format=json", timeout=10)
            except (OSError, ValueError) as exc:
                last = exc
                continue
            if isinstance(answer, list) and answer and isinstance(answer[0], dict):
                return self.node_names().index(str(answer[0]["node"]))
        raise DevServerError(f"no node of cluster {self.name} names an elected master ({last})")

    def non_master(self) -> int:
        """Index of a node that is not the elected master: the one that can be stopped without losing quorum."""
        master = self.master()
        return next(i for i in range(len(self.nodes)) if i != master)

    def health(self, node: int = 0, **params: str) -> dict[str, Any]:
        """``_cluster/health`` asked of one node, with query ``params`` (``wait_for_status="green"`` ...)."""
        query = "&".join(f"{key}={value}" for key, value in params.items())
        timeout = float(params.get("timeout", "30s").rstrip("s")) + 30
        try:
            answer = _get_json(f"{self.nodes[node].url}/_cluster/health?{query}", timeout=timeout)
        except urllib.error.HTTPError as exc:
            # A wait that timed out answers 408 with the same body.
            answer = json.load(exc)
        if not isinstance(answer, dict):
            raise DevServerError(f"unexpected _cluster/health answer: {answer!r}")
        return answer


def start_cluster(nodes: int = 2, version: str = ES_VERSION) -> Cluster:
    """Start an N-node Elasticsearch cluster on free loopback ports; wait until every node has joined.

    Each node is a separate server process with its own run directory (data, logs,
    config), ``node.name`` ``node-1`` ... ``node-N``, and a heap of
    :data:`CLUSTER_HEAP`. Node 1 alone bootstraps the cluster (so it is the first
    elected master); the nodes are started at the same time and the cluster is
    ready once all of them answer healthy and ``_cluster/health`` counts N nodes.

    Raises:
        MissingTool: Java 21+ or Maven is missing.
        DevServerError: A node did not start or join (the message has its log tail).
    """
    if nodes < 1:
        raise DevServerError(f"a cluster needs at least one node, not {nodes}")
    java_home = find_java()
    es_home = install(version)
    user = ensure_user()
    prune_runs()
    name = f"moments-cluster-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ports: set[int] = set()
    while len(ports) < 2 * nodes:  # distinct, even if the kernel hands one out twice
        ports.add(_free_port())
    http_ports, transport_ports = sorted(ports)[:nodes], sorted(ports)[nodes:]
    seeds = ",".join(f"127.0.0.1:{port}" for port in transport_ports)
    run_dirs = [_new_run_dir(es_home, user, f"node-{i + 1}-") for i in range(nodes)]

    def launch(i: int) -> Server:
        settings = [f"-Ecluster.name={name}", f"-Enode.name=node-{i + 1}", f"-Ediscovery.seed_hosts={seeds}"]
        return _launch(
            version,
            es_home,
            java_home,
            user,
            run_dirs[i],
            http_ports[i],
            transport_port=transport_ports[i],
            node_settings=settings,
            first_start_settings=["-Ecluster.initial_master_nodes=node-1"],
            heap=CLUSTER_HEAP,
        )

    with ThreadPoolExecutor(max_workers=nodes) as pool:
        futures = [pool.submit(launch, i) for i in range(nodes)]
        started: list[Server] = []
        failure: BaseException | None = None
        for future in futures:
            try:
                started.append(future.result())
            except BaseException as exc:  # the others must still be stopped, whatever went wrong
                failure = failure or exc
    if failure is not None:
        for server in started:
            stop(server)
        for run_dir in run_dirs:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise failure
    cluster = Cluster(name, started)
    health = cluster.health(wait_for_nodes=str(nodes), timeout=f"{START_TIMEOUT_S:.0f}s")
    if health.get("number_of_nodes") != nodes:
        tails = "\n".join(f"--- node-{i + 1}:\n{s.log_tail(15)}" for i, s in enumerate(started))
        stop_cluster(cluster)
        raise DevServerError(f"only {health.get('number_of_nodes')} of {nodes} nodes joined {name}:\n{tails}")
    _say(f"cluster {name} is up: {', '.join(cluster.urls)}")
    return cluster


def stop_node(cluster: Cluster, index: int) -> None:
    """Stop one node of ``cluster``, keeping its data so that :func:`restart_node` brings it back."""
    stop(cluster.nodes[index], keep=True)


def restart_node(cluster: Cluster, index: int, version: str = ES_VERSION) -> Server:
    """Start a stopped node again, same ports and data; it rejoins and recovers its shards."""
    cluster.nodes[index] = restart(cluster.nodes[index], version)
    return cluster.nodes[index]


def stop_cluster(cluster: Cluster, *, keep: bool = False) -> None:
    """Stop every node (the non-masters first, so the master does not re-plan for each one leaving)."""
    order = list(range(len(cluster.nodes)))
    with contextlib.suppress(DevServerError):
        master = cluster.master()
        order.remove(master)
        order.append(master)
    for index in order:
        stop(cluster.nodes[index], keep=keep)


@contextlib.contextmanager
def running_cluster(nodes: int = 2, version: str = ES_VERSION) -> Iterator[Cluster]:
    """:func:`start_cluster` as a context manager: the cluster is always stopped (and its data deleted) after."""
    cluster = start_cluster(nodes, version)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


def cmd_cluster(nodes: int, version: str) -> int:
    """``cluster``: an N-node cluster in the foreground until Ctrl-C (or SIGTERM), then stopped."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with running_cluster(nodes, version) as cluster:
            print(f"MOMENTS_TEST_ES_URL={cluster.urls[0]}", flush=True)
            for i, url in enumerate(cluster.urls, 1):
                print(f"node-{i}: {url}", flush=True)
            _say("Ctrl-C stops the cluster")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


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
    cluster_parser = sub.add_parser("cluster", help="an N-node cluster on loopback in the foreground (Ctrl-C stops)")
    cluster_parser.add_argument("--nodes", type=int, default=2, help="how many nodes (default: 2)")
    args = parser.parse_args(argv)
    try:
        if args.action == "run":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            return run(command, args.version)
        if args.action == "start":
            return cmd_start(args.version)
        if args.action == "stop":
            return cmd_stop()
        if args.action == "cluster":
            return cmd_cluster(args.nodes, args.version)
        return cmd_status()
    except DevServerError as exc:
        _say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
