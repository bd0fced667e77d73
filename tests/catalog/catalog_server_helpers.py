"""Start and stop a real ``tiled serve`` process on loopback for the server tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ophyd_servomex.catalog import serve_command, write_server_config

API_KEY = "ophydservomextestkey0123456789"  # tiled accepts alphanumerics only
STARTUP_TIMEOUT = 90.0
# a dead server must not block a RunEngine or a test for a minute (read by tiled at import)
FAST_FAIL_ENV = {"TILED_RETRY_ATTEMPTS": "1", "TILED_RETRY_TIMEOUT": "2"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TiledServer:
    """A ``tiled serve config`` child process serving a catalog in ``directory``."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.config = write_server_config(directory, port=self.port)
        self.log = directory / f"server-{self.port}.log"
        tiled = str(Path(sys.executable).with_name("tiled"))
        argv = serve_command(self.config, API_KEY, host="127.0.0.1", port=self.port, tiled=tiled)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **FAST_FAIL_ENV}
            )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        import httpx

        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tiled serve exited: {self.log.read_text()[-2000:]}")
            try:
                response = httpx.get(f"{self.uri}/api/v1/", timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if response.status_code in (200, 401):
                return
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"tiled serve did not come up: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: the server dies as a crashed one would."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
