"""Test peers besides the simulator's own servers.

* :class:`PickySlave` — a simulated analyser (the simulator's ``answer``) behind an RTU
  slave that can refuse chosen requests with an exception code, or ignore them (silence),
  like a unit that rejects broad spans or lacks a function.
* :class:`PtyBridge` — two pseudo-terminals joined back to back by a thread, so two
  programs that each open a serial *device path* (our client, a pymodbus server) can talk.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc

from ophyd_servomex.codec.errors import ServomexError
from ophyd_servomex.codec.modbus_frames import (
    ModbusRequest,
    build_exception,
    decode_rtu,
    encode_rtu,
    parse_request,
    rtu_request_length,
)
from ophyd_servomex.sim import SimAnalyser, answer

SILENT = -1
"""A policy result: send no reply at all."""

type Policy = Callable[[ModbusRequest], int | None]
"""Given a request: ``None`` to answer normally, an exception code, or :data:`SILENT`."""


@dataclass
class PickySlave:
    """An RTU slave at ``analyser.address`` answering from a :class:`SimAnalyser`."""

    analyser: SimAnalyser
    policy: Policy = lambda request: None
    requests: list[bytes] = field(default_factory=list)

    async def serve(self, stream: anyio.abc.ByteStream) -> None:
        buf = b""
        try:
            while True:
                buf += await stream.receive()
                while (size := rtu_request_length(buf)) is not None and len(buf) >= size:
                    adu, buf = buf[:size], buf[size:]
                    await self._handle(stream, adu)
        except (ServomexError, anyio.EndOfStream, anyio.BrokenResourceError):
            return
        except anyio.ClosedResourceError:
            return

    async def _handle(self, stream: anyio.abc.ByteStream, adu: bytes) -> None:
        try:
            address, pdu = decode_rtu(adu)
        except ServomexError:
            return
        self.requests.append(adu)
        if address != self.analyser.address:
            return
        request = parse_request(pdu)
        verdict = self.policy(request)
        if verdict == SILENT:
            return
        reply = answer(self.analyser, pdu) if verdict is None else build_exception(pdu[0], verdict)
        await stream.send(encode_rtu(address, reply))


class PtyBridge:
    """Two ptys joined by a copying thread: ``path_a`` ↔ ``path_b``."""

    def __init__(self) -> None:
        self._master_a, slave_a = os.openpty()
        self._master_b, slave_b = os.openpty()
        for fd in (self._master_a, self._master_b, slave_a, slave_b):
            tty.setraw(fd)
        self.path_a = os.ttyname(slave_a)
        self.path_b = os.ttyname(slave_b)
        # keep the slave ends open so a client closing its end does not hang up the pty
        self._slaves = (slave_a, slave_b)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="pty-bridge", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        peers = {self._master_a: self._master_b, self._master_b: self._master_a}
        while True:
            ready, _, _ = select.select([*peers, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if data:
                    os.write(peers[fd], data)

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=2)
        for fd in (self._master_a, self._master_b, *self._slaves, self._stop_r, self._stop_w):
            os.close(fd)
