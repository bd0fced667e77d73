"""Shared fixtures for the transport tests: the anyio backend and an RFC 2217 bridge."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async transport tests run on asyncio."""
    return "asyncio"


class _SocketWriter:
    """The ``connection`` PortManager needs: a thread-safe ``write``."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock, contextlib.suppress(OSError):
            self._conn.sendall(data)


def _pty_serial_class() -> Any:
    """pyserial's Serial for a pty, which has no modem lines (their ioctls fail with ENOTTY).

    A pty also refuses 7 data bits and parity (EINVAL); the settings the client negotiated
    are still recorded on the object, which is what the tests check.
    """
    import termios

    import serial

    class PtySerial(serial.Serial):  # type: ignore[misc]
        cts = dsr = ri = cd = False

        def _reconfigure_port(self, force_update: bool = False) -> None:
            with contextlib.suppress(termios.error):
                super()._reconfigure_port(force_update)

        def _update_rts_state(self) -> None:
            pass

        def _update_dtr_state(self) -> None:
            pass

        def _update_break_state(self) -> None:
            pass

    return PtySerial


class Rfc2217Bridge:
    """pyserial's own RFC 2217 server class (``PortManager``) on 127.0.0.1, in threads.

    It serves one TCP client at a time and bridges it to the serial device ``serial_path``
    (a pty slave), as ``rfc2217_server.py`` deployments do.
    """

    def __init__(self, serial_path: str) -> None:
        self._serial_path = serial_path
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        host, port = self._listener.getsockname()[:2]
        self.url = f"rfc2217://{host}:{port}"
        self._stop = threading.Event()
        self._drop = threading.Event()
        self.serial: Any = None  # the bridged pyserial port of the current client
        self._thread = threading.Thread(target=self._serve, name="rfc2217-bridge", daemon=True)
        self._thread.start()

    def drop_client(self) -> None:
        """Cut the current client's TCP connection (a pulled network cable)."""
        self._drop.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._drop.clear()
            try:
                self._bridge(conn)
            finally:
                conn.close()

    def _bridge(self, conn: socket.socket) -> None:
        import serial.rfc2217

        _PtySerial = _pty_serial_class()
        ser = _PtySerial(self._serial_path, timeout=0.05)
        self.serial = ser
        writer = _SocketWriter(conn)
        manager = serial.rfc2217.PortManager(ser, writer)
        alive = threading.Event()
        alive.set()

        def serial_to_network() -> None:
            while alive.is_set():
                try:
                    data = ser.read(ser.in_waiting or 1)
                except (OSError, TypeError):
                    break
                if data:
                    writer.write(b"".join(manager.escape(data)))

        pump = threading.Thread(target=serial_to_network, name="rfc2217-pump", daemon=True)
        pump.start()
        conn.settimeout(0.05)
        try:
            while not self._stop.is_set() and not self._drop.is_set():
                try:
                    data = conn.recv(1024)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                payload = b"".join(manager.filter(data))
                if payload:
                    ser.write(payload)
        finally:
            alive.clear()
            pump.join(5)
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            ser.close()


@pytest.fixture
def rfc2217_bridge_factory() -> Iterator[Any]:
    """Start bridges to given serial paths; all are stopped after the test."""
    bridges: list[Rfc2217Bridge] = []

    def start(serial_path: str) -> Rfc2217Bridge:
        bridge = Rfc2217Bridge(serial_path)
        bridges.append(bridge)
        return bridge

    yield start
    for bridge in bridges:
        bridge.close()
