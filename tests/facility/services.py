"""Facility services for the tests: Redis, PostgreSQL, a tiled server and the queue server.

Every service binds loopback on a private port and is stopped by whoever started it (a
``finally`` or a fixture's teardown, and as a last resort at interpreter exit). The Debian
binaries (``redis-server``, PostgreSQL's ``initdb``/``pg_ctl``) are found on ``PATH`` or under
``/usr/lib/postgresql/N/bin``; :func:`missing_binaries` says which are absent so tests can skip
with the reason (``.ci/run`` installs them, so CI runs everything).

PostgreSQL refuses to run as root: as root the cluster belongs to the ``postgres`` user
(``runuser -u postgres``) and lives in a throw-away directory under ``/tmp`` (pytest's own
temporary directories are private to root).

    python services.py writer URI REDIS PREFIX RUNS   # one writer process of test_postgres
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

STARTUP_TIMEOUT = 90.0
API_KEY = "facilitytestkey0123456789abcdef"  # tiled accepts alphanumerics only
FAST_FAIL_ENV = {"TILED_RETRY_ATTEMPTS": "1", "TILED_RETRY_TIMEOUT": "2"}


def free_port() -> int:
    """A TCP port free on loopback right now (a service started on it may still lose it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str | None:
    """``redis-server`` from ``PATH`` (Debian: ``/usr/bin``)."""
    return shutil.which("redis-server")


def postgres_bin_directory() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` with ``initdb`` and ``pg_ctl``, else on PATH."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing_binaries(*names: str) -> list[str]:
    """Which of ``redis``, ``postgresql``, ``psql`` cannot be found."""
    missing = []
    for name in names:
        if name == "redis" and redis_server_binary() is None:
            missing.append("redis-server")
        elif name == "postgresql" and postgres_bin_directory() is None:
            missing.append("postgresql (initdb, pg_ctl)")
        elif name == "psql" and shutil.which("psql") is None:
            missing.append("psql")
    return missing


REQUIRE_ENV = "OPHYD_SERVOMEX_REQUIRE_SERVICES"
"""Set (by ``.ci/run``): a missing Debian binary fails the facility tests instead of skipping."""

INSTALL_HINT = {"redis": "redis-server", "postgresql": "postgresql", "psql": "postgresql-client"}


def skip_unless_installed(*names: str) -> None:
    """Skip the test (fail it where ``OPHYD_SERVOMEX_REQUIRE_SERVICES`` is set) when any of
    ``redis``, ``postgresql``, ``psql`` is missing."""
    import pytest

    missing = missing_binaries(*names)
    if not missing:
        return
    packages = " ".join(dict.fromkeys(INSTALL_HINT[name] for name in names))
    reason = f"not installed: {', '.join(missing)} (apt-get install {packages})"
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason}; {REQUIRE_ENV} is set", pytrace=False)
    pytest.skip(reason)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}: {_tail(log)}")


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes] | None, *, group: bool = False) -> None:
    """SIGTERM (the process group with ``group``), then SIGKILL after 10 s."""
    if process is None or process.poll() is not None:
        return
    try:
        if group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.terminate()
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        if group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait(timeout=10)
    except ProcessLookupError:
        process.wait(timeout=10)


class RedisServer:
    """``redis-server`` on 127.0.0.1 at a private port, nothing saved to disk."""

    def __init__(self, directory: Path) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        for _ in range(3):
            self.port = free_port()
            self.log = directory / f"redis-{self.port}.log"
            argv = [
                binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(directory),
                "--save", "",
                "--appendonly", "no",
                "--logfile", str(self.log),
            ]  # fmt: skip
            self.process = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
            atexit.register(self.stop)
            try:
                _wait_for_port(self.port, self.process, "redis-server", self.log)
                break
            except RuntimeError:
                self.stop()
                if self.process.returncode is None:  # pragma: no cover - still up: give up
                    raise
        else:
            raise RuntimeError(f"redis-server would not start: {_tail(self.log)}")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.address = f"127.0.0.1:{self.port}"

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        _stop(self.process)


class PostgresServer:
    """A throw-away PostgreSQL cluster on 127.0.0.1 at a private port (trust authentication).

    ``database`` is created and owned by the role ``user``; :attr:`uri` is
    ``postgresql://user@127.0.0.1:PORT/database``. :meth:`stop` stops the cluster and deletes
    its directory.
    """

    def __init__(self, *, user: str = "tiled", database: str = "tiled") -> None:
        bin_directory = postgres_bin_directory()
        if bin_directory is None:
            raise RuntimeError("PostgreSQL (initdb, pg_ctl) is not installed")
        self._bin = bin_directory
        self._as_postgres = os.geteuid() == 0
        # /tmp, not pytest's tmp_path: the postgres user must reach the directory
        self.root = Path(tempfile.mkdtemp(prefix="smx-pg-"))
        self.data = self.root / "data"
        self.socket_directory = self.root / "sock"
        self.log = self.root / "postgres.log"
        self._started = False
        atexit.register(self.stop)
        try:
            self._init()
            self.port = self._start()
            self._create(user, database)
        except BaseException:
            self.stop()
            raise
        self.uri = f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(
            argv, check=True, capture_output=True, text=True, timeout=STARTUP_TIMEOUT, **kwargs
        )

    def _init(self) -> None:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            self.root.chmod(0o700)
        for directory in (self.data, self.socket_directory):
            self._run(["mkdir", "-m", "700", str(directory)])
        self._run([
            str(self._bin / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-locale", "--encoding=UTF8",
        ])  # fmt: skip

    def _start(self) -> int:
        for _ in range(3):
            port = free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {port} -k {self.socket_directory}"
            try:
                self._run([
                    str(self._bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                    "-w", "-t", str(int(STARTUP_TIMEOUT)), "-o", options, "start",
                ])  # fmt: skip
            except subprocess.CalledProcessError:
                continue  # the port was taken meanwhile: another one
            self._started = True
            return port
        raise RuntimeError(f"PostgreSQL would not start: {_tail(self.log)}")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser; returns psql's unaligned output."""
        argv = [
            shutil.which("psql") or str(self._bin / "psql"),
            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-At", "-c", sql,
        ]  # fmt: skip
        done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
        return done.stdout

    def _create(self, user: str, database: str) -> None:
        self.psql(f'CREATE ROLE "{user}" LOGIN')
        self.psql(f'CREATE DATABASE "{database}" OWNER "{user}"')

    def stop(self) -> None:
        """Stop the cluster (fast shutdown) and delete its directory."""
        if self._started:
            self._started = False
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._run([str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)


class TiledServer:
    """``tiled serve config`` for a catalog at ``uri`` (PostgreSQL or SQLite).

    The API key reaches the server through ``TILED_SINGLE_USER_API_KEY`` in its environment,
    never its command line; clients use ``TILED_API_KEY``/``api_key=``.
    """

    def __init__(self, directory: Path, *, uri: str | None = None, api_key: str = API_KEY) -> None:
        from ophyd_servomex.catalog import write_server_config

        self.api_key = api_key
        self.process: subprocess.Popen[bytes] | None = None
        tiled = str(Path(sys.executable).with_name("tiled"))
        env = {**os.environ, **FAST_FAIL_ENV, "TILED_SINGLE_USER_API_KEY": api_key}
        for attempt in range(3):
            self.port = free_port()
            self.uri = f"http://127.0.0.1:{self.port}"
            config = write_server_config(directory, uri=uri, host="127.0.0.1", port=self.port)
            self.argv = [tiled, "serve", "config", str(config)]
            self.log = directory / f"tiled-{self.port}.log"
            self.process = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
            atexit.register(self.stop)
            # tiled prints "connect to http://…?api_key=KEY" at start-up when the key came
            # from the environment: the log keeps every line but that key
            threading.Thread(target=self._pump, args=(self.process, self.log), daemon=True).start()
            try:
                self._wait_until_up()
                return
            except RuntimeError:
                self.stop()
                if attempt == 2:
                    raise

    def _pump(self, process: subprocess.Popen[bytes], path: Path) -> None:
        assert process.stdout is not None
        secret = self.api_key.encode()
        with path.open("ab") as log:
            for line in process.stdout:
                log.write(line.replace(secret, b"***"))
                log.flush()

    def _wait_until_up(self) -> None:
        import httpx

        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tiled serve exited: {_tail(self.log)}")
            try:
                response = httpx.get(f"{self.uri}/api/v1/", timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if response.status_code in (200, 401):
                return
            time.sleep(0.2)
        raise RuntimeError(f"tiled serve did not come up: {_tail(self.log)}")

    def stop(self) -> None:
        _stop(self.process)


def spawn(
    argv: Sequence[str], *, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group (so :func:`stop_group` ends its children too)."""
    output: IO[bytes] | int = subprocess.DEVNULL
    if log is not None:
        output = log.open("ab")
    try:
        process = subprocess.Popen(
            list(argv),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    finally:
        if not isinstance(output, int):
            output.close()
    atexit.register(stop_group, process)
    return process


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started by :func:`spawn` and everything in its process group."""
    _stop(process, group=True)


@contextlib.contextmanager
def simulator(*args: str, log: Path | None = None) -> Iterator[str]:
    """``ophyd-servomex sim --pty ARGS`` in a child process; yields the port it prints first."""
    exe = str(Path(sys.executable).with_name("ophyd-servomex"))
    process = subprocess.Popen(
        [exe, "sim", "--pty", *args],
        stdout=subprocess.PIPE,
        stderr=log.open("ab") if log is not None else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    atexit.register(stop_group, process)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line:
            raise RuntimeError(f"the simulator printed no port (exit {process.poll()})")
        yield line.split()[-1]
    finally:
        stop_group(process)
        if process.stdout is not None:
            process.stdout.close()


# --- one writer process for test_postgres -------------------------------------------------


def _writer(catalog_uri: str, redis_url: str, prefix: str, runs: int) -> None:
    """Open the server catalog, share metadata through Redis, write ``runs`` counts."""
    import json

    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd_async.core import init_devices

    from ophyd_servomex import ServomexAnalyser
    from ophyd_servomex.catalog import open_catalog
    from ophyd_servomex.catalog.shared_md import subscribe_shared

    catalog = open_catalog(catalog_uri)
    RE = RunEngine({})
    subscribe_shared(RE, catalog, redis_url, prefix, backup_directory=os.environ["WRITER_BACKUP"])
    starts: list[dict[str, Any]] = []
    RE.subscribe(lambda name, doc: starts.append(doc) if name == "start" else None)
    with init_devices(mock=True):
        analyser = ServomexAnalyser("mock", name="analyser")
    print("READY", flush=True)
    sys.stdin.readline()  # all writers start together
    for index in range(runs):
        RE(count([analyser], num=5), writer_pid=os.getpid(), index=index)
    results = [{"uid": doc["uid"], "scan_id": doc["scan_id"]} for doc in starts]
    print("DONE", json.dumps(results), flush=True)


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "writer":
        _writer(rest[0], rest[1], rest[2], int(rest[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
