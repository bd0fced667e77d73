"""Helpers for the simulator tests: a fake clock, and pymodbus
as an independent Modbus peer that builds requests and decodes replies from raw bytes."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
from pymodbus.framer import FramerAscii, FramerBase, FramerRTU
from pymodbus.pdu import DecodePDU, ModbusPDU


class FakeClock:
    """A settable monotonic clock for the pure state model."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def client_framer(framing: str) -> FramerBase:
    """A pymodbus client-side framer (decodes responses) for "rtu" or "ascii"."""
    decoder = DecodePDU(is_server=False)
    return FramerRTU(decoder) if framing == "rtu" else FramerAscii(decoder)


def build_request(framing: str, pdu: ModbusPDU) -> bytes:
    """The ADU pymodbus builds for a request PDU object."""
    return bytes(client_framer(framing).buildFrame(pdu))


async def read_reply(
    stream: anyio.abc.ByteStream, framing: str, *, within: float = 2.0, address: int = 0
) -> tuple[ModbusPDU, bytes]:
    """Receive until pymodbus decodes one reply; returns it and the raw bytes."""
    framer = client_framer(framing)
    data = b""
    with anyio.fail_after(within):
        while True:
            data += await stream.receive()
            _, pdu = framer.handleFrame(data, address, 0)
            if pdu is not None:
                return pdu, data


async def transact(
    stream: anyio.abc.ByteStream, framing: str, pdu: ModbusPDU, *, within: float = 2.0
) -> tuple[ModbusPDU, bytes]:
    """Send pymodbus's request ADU and decode the reply with pymodbus."""
    await stream.send(build_request(framing, pdu))
    return await read_reply(stream, framing, within=within, address=pdu.dev_id)


async def receive_exactly(stream: anyio.abc.ByteStream, n: int, *, within: float = 2.0) -> bytes:
    """Exactly ``n`` bytes (fails on timeout)."""
    data = b""
    with anyio.fail_after(within):
        while len(data) < n:
            data += await stream.receive()
    assert len(data) == n, data
    return data


async def receive_line(stream: anyio.abc.ByteStream, *, within: float = 2.0) -> bytes:
    """Bytes up to and including the first LF."""
    data = b""
    with anyio.fail_after(within):
        while b"\n" not in data:
            data += await stream.receive(1)
    return data


async def assert_silent(stream: anyio.abc.ByteStream, wait: float = 0.15) -> None:
    """Nothing arrives within ``wait`` seconds."""
    got: Any = None
    with anyio.move_on_after(wait):
        got = await stream.receive()
    assert got is None, f"expected silence, got {got!r}"
