"""The simulated analysers' Modbus slave: RTU or ASCII over any anyio byte stream.

One :class:`ModbusSlave` is one bus: it serves every analyser in its list, each at its
own address, and stays silent for any other address, for a bad CRC/LRC and for the
broadcast address 0 (what the bench unit does with a wrong address, docs/protocol.md §5.9).
A Modbus-mode analyser never sends anything unasked.

With ``realistic_timing`` the slave behaves like the bench unit behind its USB-RS485
adapter (§5.10): a request whose first byte arrives less than ``min_gap`` (50 ms) after
the end of the previous transaction is dropped (no reply; the dropped request then counts
as the previous transaction), a reply leaves after a 20–40 ms turnaround, and request and
reply each take their wire time at the configured baud rate (``SerialSettings.wire_time``).
Without it, replies go out at once (zero-latency, for fast tests).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence

import anyio
import anyio.abc

from ..codec.errors import ServomexValidationError
from ..codec.modbus_frames import encode_ascii, encode_rtu
from ..codec.models import SerialSettings
from .analyser import SimAnalyser
from .dispatch import answer
from .faults import FaultInjector, Framing
from .links import DISCONNECT_LINGER, LINK_CLOSED, LINK_LOST, Disconnected
from .splitter import AsciiRequestSplitter, Received, RequestSplitter, RtuRequestSplitter
from .wirelog import Direction, WireEvent, WireKind, WireLog

__all__ = ["DEFAULT_MIN_GAP", "DEFAULT_TURNAROUND", "ModbusSlave"]

DEFAULT_MIN_GAP = 0.05
"""Line silence the bench unit needs before a request (seconds)."""
DEFAULT_TURNAROUND = (0.020, 0.040)
"""Range of the bench unit's reply latency (seconds)."""


class ModbusSlave:
    """Serve analysers at distinct addresses on one bus, in RTU or ASCII framing.

    ``log`` and ``faults`` default to fresh ones (see :mod:`.wirelog`, :mod:`.faults`).
    ``silence`` is the line silence after which a partial request is discarded (default:
    20 ms for RTU, or 3.5 character times if longer; 1 s for ASCII).
    """

    def __init__(
        self,
        analysers: Sequence[SimAnalyser],
        framing: str | Framing = Framing.RTU,
        *,
        realistic_timing: bool = False,
        settings: SerialSettings | None = None,
        log: WireLog | None = None,
        faults: FaultInjector | None = None,
        silence: float | None = None,
        min_gap: float = DEFAULT_MIN_GAP,
        turnaround: tuple[float, float] = DEFAULT_TURNAROUND,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.framing = Framing.parse(framing)
        if self.framing is Framing.CONTINUOUS:
            raise ServomexValidationError("a Modbus slave frames RTU or ASCII, not continuous")
        by_address: dict[int, SimAnalyser] = {}
        for analyser in analysers:
            if analyser.address in by_address:
                raise ServomexValidationError(
                    f"two analysers at Modbus address {analyser.address} on one bus"
                )
            by_address[analyser.address] = analyser
        if not by_address:
            raise ServomexValidationError("a Modbus bus needs at least one analyser")
        self.analysers = tuple(analysers)
        self.settings = settings or SerialSettings("")
        self.realistic_timing = realistic_timing
        self.log = log if log is not None else WireLog()
        self.faults = faults if faults is not None else FaultInjector(self.framing)
        if silence is None:
            silence = (
                1.0 if self.framing is Framing.ASCII else max(0.02, self.settings.wire_time(4))
            )
        self.silence = silence
        self.min_gap = min_gap
        self.turnaround = turnaround
        self._by_address = by_address
        self._clock = clock
        self._rng = random.Random(seed)
        self._last_end = -math.inf

    def _splitter(self) -> RequestSplitter:
        if self.framing is Framing.RTU:
            return RtuRequestSplitter(self.silence)
        return AsciiRequestSplitter(self.silence)

    async def serve(self, stream: anyio.abc.ByteStream, *, persistent: bool = False) -> None:
        """Answer requests from ``stream`` until the link closes.

        When the client goes away the slave returns, or, with ``persistent`` (a pty whose
        master outlives its clients), forgets any partial request and waits for the next
        client. A ``DISCONNECT`` fault closes ``stream`` and returns.
        """
        splitter = self._splitter()
        while True:
            try:
                chunk = await self._receive(stream, splitter)
            except LINK_LOST:
                self._flush(splitter)
                if not persistent:
                    return
                self._last_end = -math.inf
                continue
            except LINK_CLOSED:
                return
            if chunk is None:
                continue
            try:
                for item in splitter.feed(chunk, self._clock()):
                    await self._handle(stream, item)
            except Disconnected:
                return
            except LINK_LOST:
                if not persistent:
                    return
                splitter.reset()
            except LINK_CLOSED:
                return

    async def _receive(
        self, stream: anyio.abc.ByteStream, splitter: RequestSplitter
    ) -> bytes | None:
        """The next chunk, or None after discarding a partial request cut off by silence."""
        deadline = splitter.deadline()
        if deadline is None:
            return await stream.receive()
        with anyio.move_on_after(max(0.0, deadline - self._clock())):
            return await stream.receive()
        for item in splitter.expire(self._clock()):
            self._log_discarded(item)
        return None

    def _flush(self, splitter: RequestSplitter) -> None:
        for item in splitter.expire(math.inf):
            self._log_discarded(item)

    def _log_discarded(self, item: Received) -> None:
        self.log.record(
            WireEvent(item.ended, Direction.RX, WireKind.DISCARDED, item.data, None, item.reason)
        )

    def _encode(self, address: int, pdu: bytes) -> bytes:
        if self.framing is Framing.RTU:
            return encode_rtu(address, pdu)
        return encode_ascii(address, pdu)

    async def _handle(self, stream: anyio.abc.ByteStream, item: Received) -> None:
        if item.pdu is None or item.address is None:
            self._log_discarded(item)
            return
        address, pdu = item.address, item.pdu
        gap = item.started - self._last_end
        analyser = self._by_address.get(address)
        note = ""
        if self.realistic_timing and gap < self.min_gap:
            note = (
                f"dropped: {gap * 1000:.1f} ms after the previous transaction "
                f"(< {self.min_gap * 1000:.0f} ms)"
            )
        elif address == 0:
            note = "broadcast address 0: ignored"
        elif analyser is None:
            note = f"no analyser at address {address}: silent"
        self.log.record(
            WireEvent(item.ended, Direction.RX, WireKind.REQUEST, item.data, address, note)
        )
        if analyser is None or note:
            self._last_end = item.ended
            return
        reply_pdu = answer(analyser, pdu)
        reply = self._encode(address, reply_pdu)
        if self.realistic_timing:
            low, high = self.turnaround
            await anyio.sleep(
                self.settings.wire_time(len(item.data))
                + self._rng.uniform(low, high)
                + self.settings.wire_time(len(reply))
            )
        delivery = self.faults.deliver(reply, address)
        if delivery.delay > 0:
            await anyio.sleep(delivery.delay)
        exception = f"exception {reply_pdu[1]:02d}" if reply_pdu[0] & 0x80 else ""
        note = "; ".join(n for n in (exception, delivery.note) if n)
        if delivery.suppressed:
            self.log.record(
                WireEvent(self._clock(), Direction.TX, WireKind.SUPPRESSED, reply, address, note)
            )
            self._last_end = self._clock()
            return
        await stream.send(delivery.data)
        now = self._clock()
        self.log.record(WireEvent(now, Direction.TX, WireKind.REPLY, delivery.data, address, note))
        self._last_end = now
        if delivery.disconnect:
            if delivery.data:
                await anyio.sleep(DISCONNECT_LINGER)
            await stream.aclose()
            self.log.record(
                WireEvent(self._clock(), Direction.TX, WireKind.DISCONNECT, b"", address, note)
            )
            raise Disconnected
