"""Start and stop a real ``tiled serve`` process on loopback for the server tests."""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ophyd_servomex.catalog import serve_command, serve_environment, write_server_config

API_KEY = "ophydservomextestkey0123456789"  # tiled accepts alphanumerics only
STARTUP_TIMEOUT = 90.0
# a dead server must not block a RunEngine or a test for a minute (read by tiled at import)
FAST_FAIL_ENV = {"TILED_RETRY_ATTEMPTS": "1", "TILED_RETRY_TIMEOUT": "2"}


class _ExitedEarly(RuntimeError):
    """The server process ended during start-up (e.g. its port was taken meanwhile)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TiledServer:
    """A ``tiled serve config`` child process serving a catalog in ``directory``.

    Robust for CI: a port picked free can be taken before the server binds it, so a server
    that exits during start-up is retried on a new port (unless ``port`` was given); the
    constructor returns only once the server answers HTTP, and the process is killed on any
    start-up failure (Ctrl-C included) and, as a last resort, when the interpreter exits.
    """

    def __init__(self, directory: Path, *, port: int | None = None, attempts: int = 3) -> None:
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        for attempt in range(1, attempts + 1):
            self.port = port or free_port()
            self.uri = f"http://127.0.0.1:{self.port}"
            self.config = write_server_config(directory, port=self.port)
            self.log = directory / f"server-{self.port}.log"
            tiled = str(Path(sys.executable).with_name("tiled"))
            self.argv = serve_command(self.config, host="127.0.0.1", port=self.port, tiled=tiled)
            # the key goes through the environment, never argv (the process list shows argv)
            env = serve_environment(API_KEY, {**os.environ, **FAST_FAIL_ENV})
            self.process = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
            # tiled prints "connect to http://…?api_key=KEY" at start-up when the key came
            # from the environment: the log (mode 0600) keeps every line but that key
            threading.Thread(target=self._pump, args=(self.process,), daemon=True).start()
            atexit.register(self.kill)
            try:
                self._wait_until_up()
                return
            except _ExitedEarly:
                if port is not None or attempt == attempts:
                    raise
            except BaseException:
                self.kill()
                raise

    def _pump(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:
            for line in process.stdout:
                log.write(line.replace(API_KEY.encode(), b"***"))
                log.flush()

    def _wait_until_up(self) -> None:
        import httpx

        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the pump write the last lines
                raise _ExitedEarly(f"tiled serve exited: {self._log_tail()}")
            try:
                response = httpx.get(f"{self.uri}/api/v1/", timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if response.status_code in (200, 401):
                return
            time.sleep(0.2)
        raise RuntimeError(f"tiled serve did not come up: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: the server dies as a crashed one would."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 10 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
