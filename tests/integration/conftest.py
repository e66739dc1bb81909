"""A real ``redis-server`` for the integration tests, on a free loopback port.

One server is started per session (cheap to restart: ``.stop()`` / ``.start()`` keep the
port); every test gets a flushed database, a unique breaker name and a fresh breaker
registry. Without ``redis-server`` on PATH the tests are skipped, except on CI
(``CI=true``), where a missing server is a failure: CI must install it.

The ``postgres`` fixture does the same for a throwaway PostgreSQL cluster (see below).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from brace.testing import reset_breakers
from tests.conftest import require

START_TIMEOUT_S = 10.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: an integration test that takes over 3 s")
STOP_TIMEOUT_S = 5.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    """True when a Redis server on 127.0.0.1:port answers PING (raw RESP, no client)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            # A server started with --requirepass answers, but asks for the password first.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` child process bound to 127.0.0.1, without persistence."""

    def __init__(self, executable: str, directory: Path, port: int) -> None:
        self.executable = executable
        self.directory = directory
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log_path = directory / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self.extra: list[str] = []  # more redis-server arguments (a cluster node's)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "redis-server is not running"
        return self._proc.pid

    def start(self) -> None:
        """Start (or restart) the server on the same port; return once it answers PING."""
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.directory),
                 *self.extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.directory)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers_ping(self.port):
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                pytest.fail(f"redis-server exited with {code} on port {self.port}:\n"
                            f"{self.log_path.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not answer PING on port {self.port} "
                            f"within {START_TIMEOUT_S} s")
            time.sleep(0.01)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted but never answered."""
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        if self._paused and self.running:
            os.kill(self.pid, signal.SIGCONT)
        self._paused = False

    def stop(self) -> None:
        """Terminate the server and wait for it (kill it if it does not exit in time)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            self._paused = False
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        # The port is closed once the process is gone; make sure nothing answers there.
        assert not _answers_ping(self.port), f"something still answers on port {self.port}"


@pytest.fixture(scope="session")
def redis_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    executable = shutil.which("redis-server")
    if executable is None:
        message = ("redis-server is not on PATH: install it (Debian/Ubuntu: "
                   "`apt-get install -y redis-server`; macOS: `brew install redis`)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install it with apt-get (see .ci/run)")
        pytest.skip(message)
    server = RedisServer(executable, tmp_path_factory.mktemp("redis"), _free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _flush(server: RedisServer) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def redis_server(redis_server_session: RedisServer) -> Iterator[RedisServer]:
    """The running server with an empty database and no named breakers in this process."""
    server = redis_server_session
    server.resume()
    server.start()
    _flush(server)
    reset_breakers()
    try:
        yield server
    finally:
        server.resume()
        server.start()  # a test may have stopped it: reset_breakers() writes to Redis
        reset_breakers()
        _flush(server)


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[object]:
    """A plain redis client for looking at the keys the breakers write."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


REDIS_PASSWORD = "brace-test-requirepass"


@pytest.fixture(scope="session")
def redis_server_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A second ``redis-server``, started with ``--requirepass REDIS_PASSWORD``.

    For the errors of a server that asks for a password (a wrong one, none, an ACL user
    without permission). Like ``redis_server_session``: skipped without redis-server,
    except on CI, where that fails.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        message = ("redis-server is not on PATH: install it (Debian/Ubuntu: "
                   "`apt-get install -y redis-server`; macOS: `brew install redis`)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install it with apt-get (see .ci/run)")
        pytest.skip(message)
    server = RedisServer(executable, tmp_path_factory.mktemp("redis-auth"), _free_port())
    server.extra = ["--requirepass", REDIS_PASSWORD]
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def breaker_name() -> str:
    """A name no other test (or earlier run) uses."""
    return f"it-{uuid.uuid4().hex[:12]}"


class RedisCluster:
    """Three ``redis-server --cluster-enabled yes`` nodes on loopback, joined by redis-cli."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.nodes = [RedisServer(executable, directory / str(i), _free_cluster_port())
                      for i in range(3)]
        self.url = f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        for node in self.nodes:
            node.directory.mkdir(exist_ok=True)
            node.extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            node.start()
        create = subprocess.run(
            ["redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{node.port}" for node in self.nodes), "--cluster-yes"],
            capture_output=True, text=True, timeout=30, check=False)
        if create.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed:\n{create.stdout}\n{create.stderr}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(b"cluster_state:ok" in _cluster_info(node.port) for node in self.nodes):
            if time.monotonic() > deadline:
                pytest.fail("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _free_cluster_port() -> int:
    # A node also listens on port + 10000 (its cluster bus): both must be free, <= 65535.
    for _ in range(100):
        port = _free_port()
        if port > 55535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    pytest.fail("no free port pair (port, port + 10000) for a Redis Cluster node")


def _cluster_info(port: int) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"CLUSTER INFO\r\n")
            return sock.recv(4096)
    except OSError:
        return b""


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-node Redis Cluster on loopback (torn down at the end of the session)."""
    executable = shutil.which("redis-server")
    if executable is None or shutil.which("redis-cli") is None:
        message = ("redis-server and redis-cli are not on PATH: install them (Debian/Ubuntu: "
                   "`apt-get install -y redis-server`; macOS: `brew install redis`)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install them with apt-get (see .ci/run)")
        pytest.skip(message)
    cluster = RedisCluster(executable, tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


class Fleet:
    """Worker processes (``fleet_worker.py``) sharing brace objects through ``server``."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self._procs: list[subprocess.Popen[str]] = []

    def run(self, mode: str, configs: list[dict[str, Any]],
            during: Any = None, timeout: float = 60) -> list[dict[str, Any]]:
        """Start one worker per config at once, release them together, return their JSON.

        ``during()`` (optional) runs once every worker is running (a fault to inject).
        """
        # Each worker's stderr (brace's events, a line each) goes to a file: a pipe read
        # only after the run fills up (64 KB) and blocks its writer, and the workers read
        # last would then starve in any test of fairness.
        with contextlib.ExitStack() as files:
            logs = [files.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in configs]
            return self._run(mode, configs, logs, during, timeout)

    def _run(self, mode: str, configs: list[dict[str, Any]], logs: list[Any],
             during: Any, timeout: float) -> list[dict[str, Any]]:
        import json
        import sys

        import redis

        def errors(indexes: Iterable[int]) -> str:
            tails = []
            for i in indexes:
                logs[i].seek(0)
                tails.append(logs[i].read()[-3000:])
            return "\n".join(tails)

        env = {k: v for k, v in os.environ.items() if k != "BRACE_ACTIVE"}
        script = Path(__file__).with_name("fleet_worker.py")
        procs = [subprocess.Popen(
            [sys.executable, str(script), mode,
             json.dumps({"url": self.server.url, "index": i, **config})],
            stdout=subprocess.PIPE, stderr=logs[i], text=True, env=env,
            cwd=Path(__file__).parents[2]) for i, config in enumerate(configs)]
        self._procs += procs
        client = redis.Redis(host="127.0.0.1", port=self.server.port, socket_timeout=5)
        try:
            name = configs[0]["name"]
            deadline = time.monotonic() + 30
            while not all(client.get(f"{name}:ready:{i}") for i in range(len(configs))):
                dead = [i for i, p in enumerate(procs) if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    pytest.fail(f"fleet workers did not get ready:\n{errors(dead)[-3000:]}")
                time.sleep(0.01)
            client.set(f"{name}:go", 1)
            if during is not None:
                during()
            results = []
            for i, proc in enumerate(procs):
                out, _ = proc.communicate(timeout=timeout)  # one line of JSON: never blocks
                assert proc.returncode == 0, f"worker failed:\n{out}\n{errors([i])}"
                results.append(json.loads(out.strip().splitlines()[-1]))
            return results
        finally:
            client.close()

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            if proc.stdout is not None:  # a worker whose output was never read
                proc.stdout.close()


@pytest.fixture
def fleet(redis_server: RedisServer) -> Iterator[Fleet]:
    """Runs worker processes against ``redis_server``; kills any left when the test ends."""
    workers = Fleet(redis_server)
    try:
        yield workers
    finally:
        workers.stop()


# --- PostgreSQL ----------------------------------------------------------------------------
# A throwaway cluster from the machine's PostgreSQL binaries (Debian's `postgresql` package
# puts them in /usr/lib/postgresql/VERSION/bin). The server runs as the `postgres` OS user when
# the tests run as root (PostgreSQL refuses to run as root), listens on a free loopback port
# with scram password auth, and keeps its socket and data in a temp dir removed afterwards.

PG_USER = "brace"
PG_PASSWORD = "s3cret-brace-pw"
PG_DATABASE = "brace_test"
PG_SUPERUSER = "postgres"
PG_TIMEOUT_S = 20


def _pg_bindir() -> Path | None:
    found = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        with contextlib.suppress(ValueError):
            found.append((int(initdb.parent.parent.name.split(".")[0]), initdb.parent))
    if found:
        return max(found)[1]
    initdb_path = shutil.which("initdb")  # e.g. Homebrew or a distribution that puts it on PATH
    return Path(initdb_path).parent if initdb_path else None


class PostgresServer:
    """A PostgreSQL cluster in ``directory``, on 127.0.0.1:``port``."""

    def __init__(self, bindir: Path, directory: Path, port: int) -> None:
        self.bindir = bindir
        self.directory = directory
        self.data = directory / "data"
        self.log_path = directory / "postgres.log"
        self.port = port
        self.host = "127.0.0.1"
        self.user = PG_USER
        self.password = PG_PASSWORD
        self.dbname = PG_DATABASE
        self._as_postgres = os.geteuid() == 0

    # -- connection strings -----------------------------------------------------------------

    def conninfo(self, *, password: str | None = None, dbname: str | None = None) -> str:
        """A libpq keyword string for the test role over TCP (scram password auth)."""
        return (f"host={self.host} port={self.port} dbname={dbname or self.dbname} "
                f"user={self.user} password={password or self.password} connect_timeout=3")

    def url(self, *, password: str | None = None, scheme: str = "postgresql") -> str:
        """A URL for the test role over TCP (asyncpg, SQLAlchemy)."""
        return (f"{scheme}://{self.user}:{password or self.password}@{self.host}:{self.port}/"
                f"{self.dbname}")

    def kwargs(self, *, password: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``asyncpg.connect``."""
        return {"host": self.host, "port": self.port, "user": self.user,
                "password": password or self.password, "database": self.dbname, "timeout": 3}

    # -- control ----------------------------------------------------------------------------

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=PG_TIMEOUT_S + 10, check=False, cwd=self.directory)
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(argv)} exited with {proc.returncode}:\n{proc.stdout}\n"
                        f"{proc.stderr}\n{self._log_tail()}")
        return proc

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def _bin(self, name: str) -> str:
        return str(self.bindir / name)

    def init(self) -> None:
        """initdb with scram auth for TCP and trust for the private Unix socket."""
        pwfile = self.directory / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres")
        self._run(self._bin("initdb"), "-D", str(self.data), "-U", PG_SUPERUSER,
                  f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                  "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.directory}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                       "max_connections = 40\nshared_buffers = 32MB\n"
                       # deadlock_timeout is superuser-only per session: a real deadlock is
                       # detected in 50 ms instead of 1 s.
                       "deadlock_timeout = 50ms\n")

    def start(self) -> None:
        """Start the server; return once it accepts connections (bounded)."""
        self._run(self._bin("pg_ctl"), "start", "-D", str(self.data), "-l", str(self.log_path),
                  "-w", "-t", str(PG_TIMEOUT_S))
        self.wait_ready()

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is terminated (57P01), then it is back."""
        self._run(self._bin("pg_ctl"), "restart", "-D", str(self.data), "-l",
                  str(self.log_path), "-m", "fast", "-w", "-t", str(PG_TIMEOUT_S))
        self.wait_ready()

    def stop(self) -> None:
        self._run(self._bin("pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w",
                  "-t", str(PG_TIMEOUT_S), check=False)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + PG_TIMEOUT_S
        while True:
            proc = self._run(self._bin("pg_isready"), "-h", self.host, "-p", str(self.port),
                             "-t", "1", check=False)
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL on port {self.port} not ready within "
                            f"{PG_TIMEOUT_S} s:\n{self._log_tail()}")
            time.sleep(0.02)  # pg_isready's own answer is what is waited for

    def superuser_connect(self) -> Any:
        """A psycopg connection as the superuser over the private Unix socket (trust)."""
        import psycopg

        return psycopg.connect(host=str(self.directory), port=self.port, user=PG_SUPERUSER,
                               dbname="postgres", autocommit=True, connect_timeout=3)

    def create_role_and_database(self) -> None:
        with self.superuser_connect() as conn:
            conn.execute(f"CREATE ROLE {PG_USER} LOGIN PASSWORD '{PG_PASSWORD}'")
            conn.execute(f"CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}")

    def set_lc_messages(self, locale: str) -> None:
        """Make the server speak ``locale`` to new connections (``ALTER SYSTEM`` + reload).

        The postmaster reloads asynchronously: return once a new session reports it.
        """
        with self.superuser_connect() as conn:
            conn.execute(f"ALTER SYSTEM SET lc_messages = '{locale}'")
            conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + PG_TIMEOUT_S
        while True:
            with self.superuser_connect() as conn:
                row = conn.execute("SHOW lc_messages").fetchone()
            if row is not None and row[0] == locale:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"lc_messages is {row} after {PG_TIMEOUT_S} s, not {locale}")
            time.sleep(0.01)  # the answer of a new session is what is waited for


def _available_locales() -> set[str]:
    proc = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=30,
                          check=False)
    return {line.strip().lower().replace("utf-8", "utf8") for line in proc.stdout.splitlines()}


def ensure_locale(locale: str) -> None:
    """Make the OS locale ``locale`` (``de_DE.UTF-8``) exist, generating it when missing.

    PostgreSQL can only speak a language whose locale the OS has. ``localedef`` (Debian's
    ``locales`` package, which .ci/install-servers installs) needs root; without it the test
    skips, except on CI (``CI=true``), where it fails.
    """
    if locale.lower().replace("utf-8", "utf8") in _available_locales():
        return
    name, _, charmap = locale.partition(".")
    localedef = shutil.which("localedef")
    if localedef is None or os.geteuid() != 0:
        message = (f"the locale {locale} is missing and cannot be generated here: run "
                   f"`localedef -i {name} -f {charmap or 'UTF-8'} {locale}` as root "
                   "(Debian/Ubuntu: `apt-get install -y locales`)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install it (see .ci/install-servers)")
        pytest.skip(message)
    proc = subprocess.run([localedef, "-i", name, "-f", charmap or "UTF-8", locale],
                          capture_output=True, text=True, timeout=300, check=False)
    # localedef exits 1 on mere warnings; what counts is whether the locale now exists.
    if locale.lower().replace("utf-8", "utf8") not in _available_locales():
        pytest.fail(f"localedef could not generate {locale}:\n{proc.stdout}\n{proc.stderr}")


@contextlib.contextmanager
def _postgres_cluster() -> Iterator[PostgresServer]:
    bindir = _pg_bindir()
    if bindir is None:
        message = ("PostgreSQL server binaries (initdb, pg_ctl) were not found in "
                   "/usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: "
                   "`apt-get install -y postgresql`; macOS: `brew install postgresql`)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install them with apt-get (see .ci/run)")
        pytest.skip(message)
    require("psycopg")  # skips locally without it, fails on CI
    directory = Path(tempfile.mkdtemp(prefix="brace-pg-", dir="/tmp"))
    server = PostgresServer(bindir, directory, _free_port())
    started = False
    try:
        if server._as_postgres:
            shutil.chown(directory, "postgres", "postgres")
        directory.chmod(0o700)
        server.init()
        server.start()
        started = True
        server.create_role_and_database()
        yield server
    finally:
        if started or server.data.exists():
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A running PostgreSQL cluster with role ``brace`` (password) and database ``brace_test``."""
    with _postgres_cluster() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_localized() -> Iterator[PostgresServer]:
    """A second cluster like ``postgres``, for tests that change its language
    (``set_lc_messages``) or restart it, so the shared one always speaks English."""
    with _postgres_cluster() as server:
        yield server
