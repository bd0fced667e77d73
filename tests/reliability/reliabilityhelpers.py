"""Helpers for the reliability suite: what the simulator's wire log says it sent, decoded
independently of the driver, and what a client received, in one comparable form.

A *good frame* is one the analyser sent whole and unspoilt: a continuous broadcast or a
complete Modbus sweep (FC04 0×70, FC02 0×80, FC02 1000×16) whose log entries carry no
fault note. A broadcast or reply prefixed with garbage is good after its garbage (the bytes
of the frame are all there); a delayed broadcast is good (it arrives, late); a delayed
Modbus reply is not (the client has given up on it by then).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ophyd_servomex.codec.continuous import parse_frame
from ophyd_servomex.codec.errors import ServomexError
from ophyd_servomex.codec.modbus_frames import (
    decode_ascii,
    decode_rtu,
    parse_request,
    unpack_bits,
)
from ophyd_servomex.codec.models import ChannelId, Frame, ProtocolKind
from ophyd_servomex.codec.registers import (
    FULL_SWEEP,
    ReadRequest,
    banks_from_responses,
    decode_banks,
)
from ophyd_servomex.sim import DEFAULT_GARBAGE, Direction, WireEvent, WireKind, WireLog

ADDRESS = 30
"""The bench unit's Modbus slave address."""


type Comparable = tuple[Any, ...]
"""A frame reduced to what must match exactly: its line and values, or its readings."""


def comparable(frame: Frame) -> Comparable:
    """What two copies of the same frame share exactly, whatever their timestamps.

    Continuous: the line itself and every decoded value. Modbus: every reading (value,
    name, unit, status) and the analyser status.
    """
    if frame.protocol is ProtocolKind.CONTINUOUS_ASCII:
        raw = (frame.raw or b"").rstrip(b"\r\n")
        return (raw, tuple(sorted(frame.values.items())))
    return (frame.readings, frame.analyser)


@dataclass(frozen=True, slots=True)
class SentFrame:
    """One good frame according to the wire log: when it went out and what it holds."""

    time: float
    frame: Comparable


def _garbage_stripped(event: WireEvent) -> bytes | None:
    """The frame's own bytes, or None when a fault spoilt them."""
    note = event.note
    if not note:
        return event.data
    if "garbage" in note and event.data.startswith(DEFAULT_GARBAGE):
        return event.data[len(DEFAULT_GARBAGE) :]
    return None


def good_broadcasts(
    log: WireLog, form: Callable[[Frame], Comparable] = comparable
) -> list[SentFrame]:
    """Every whole, valid continuous frame the simulator broadcast, decoded by the codec and
    reduced by ``form`` (default :func:`comparable`)."""
    out = []
    for event in log.events(WireKind.BROADCAST):
        data = _garbage_stripped(event)
        if data is None and "delay" in event.note:
            data = event.data
        if data is None:
            continue
        frame = parse_frame(data.rstrip(b"\r\n"), timestamp=event.time)
        out.append(SentFrame(event.time, form(frame)))
    return out


def _decode_reply(protocol: ProtocolKind, data: bytes) -> bytes:
    if protocol is ProtocolKind.MODBUS_RTU:
        return decode_rtu(data)[1]
    return decode_ascii(data)[1]


def _answer(request: ReadRequest, pdu: bytes) -> tuple[int, ...] | tuple[bool, ...]:
    if request.function == 4:
        return struct.unpack(f">{pdu[1] // 2}H", pdu[2 : 2 + pdu[1]])
    return unpack_bits(pdu[2 : 2 + pdu[1]], request.count)


def good_sweeps(log: WireLog, protocol: ProtocolKind, address: int = ADDRESS) -> list[SentFrame]:
    """Every complete sweep the simulator answered with good replies, decoded by the codec.

    Replies are paired with the request before them; a sweep is the three reads of
    ``FULL_SWEEP`` answered in order (retries in between are fine: only good replies
    count). A read that is not the next one of a sweep is ignored.
    """
    out: list[SentFrame] = []
    request: ReadRequest | None = None
    answers: dict[ReadRequest, tuple[int, ...] | tuple[bool, ...]] = {}
    started = 0.0
    for event in log.events():
        if event.direction is Direction.RX and event.kind is WireKind.REQUEST and not event.note:
            pdu = _decode_reply(protocol, event.data)
            parsed = parse_request(pdu)
            request = ReadRequest(parsed.function, parsed.address, parsed.count)
            if request == FULL_SWEEP[0]:
                started = event.time
            continue
        if event.kind is not WireKind.REPLY or request is None:
            continue
        data = _garbage_stripped(event)
        if data is None:
            continue
        step = len(answers)
        if step < len(FULL_SWEEP) and request == FULL_SWEEP[step]:
            answers[request] = _answer(request, _decode_reply(protocol, data))
        elif request == FULL_SWEEP[0]:
            answers = {request: _answer(request, _decode_reply(protocol, data))}
        if len(answers) == len(FULL_SWEEP):
            frame = decode_banks(
                banks_from_responses(answers), timestamp=0.0, protocol=protocol, address=address
            )
            out.append(SentFrame(started, comparable(frame)))
            answers = {}
    return out


@dataclass(frozen=True, slots=True)
class Outcome:
    """The named outcome of a fault, as the client saw it.

    ``raised``: the error the faulted call raised (or ``"cancelled"``); ``reported``: the
    errors published to subscribers in order; ``dropped_frames``: the analyser's counter;
    ``retries``: Modbus attempts retried; ``facts``: anything else a row names (the catalog's
    failed and recovered runs, the requests the simulator saw …).
    """

    raised: type[BaseException] | str | None = None
    reported: tuple[type[ServomexError], ...] = ()
    dropped_frames: int = 0
    retries: int = 0
    facts: tuple[tuple[str, object], ...] = ()


@dataclass(slots=True)
class Observed:
    """What one fault-matrix run produced: its outcome, and the frames on both sides.

    ``sent`` is every good frame the simulator's log shows in the window the client
    listened to; ``received`` what the client got, in order; ``fault_time`` when the fault
    was injected (``time.monotonic()``, the wire log's clock); ``abandoned`` good frames
    that went to a caller who gave up on them (cancellation), left out of ``sent``.
    """

    outcome: Outcome
    sent: list[SentFrame]
    received: list[Comparable]
    fault_time: float
    abandoned: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def before(self) -> int:
        """Good frames sent before the fault."""
        return sum(1 for s in self.sent if s.time < self.fault_time)

    @property
    def after(self) -> int:
        """Good frames sent after the fault."""
        return sum(1 for s in self.sent if s.time >= self.fault_time)


def window(sent: Sequence[SentFrame], received: Sequence[Comparable]) -> list[SentFrame]:
    """The good frames sent from the one the client received first, as many as it received
    (a client that joins a broadcast misses what went out before it listened)."""
    frames = [s.frame for s in sent]
    if not received or received[0] not in frames:
        return list(sent[: len(received)])
    start = frames.index(received[0])
    return list(sent[start : start + len(received)])


def channel_values(frame: Frame, channels: Sequence[ChannelId]) -> tuple[float | None, ...]:
    """The values of ``channels`` in ``frame``, in that order."""
    return tuple(frame.channel(c).value for c in channels)


# --- a simulator in its own process --------------------------------------------------------


def _serve_in_process(config: Any, ports: Any, stop: Any, out: Any) -> None:
    """The child process: serve ``config`` on a pty until told to stop, then send back the
    wire log's broadcasts and the analyser's simulated time."""
    from ophyd_servomex.sim import SimulatorThread

    with SimulatorThread(config) as sim:
        ports.put(sim.port)
        log = sim.log
        stop.wait()
        sim_time = sim.analyser.sim_time()
    # read the log once the simulator has stopped: read while it still broadcasts, a frame
    # could be logged between taking the events and taking the total
    events = [(e.time, e.data, e.note) for e in log.events(WireKind.BROADCAST)]
    out.put((events, sim_time, log.total))


class SimulatorProcess:
    """A simulator served from a separate process (spawned), so it never shares the GIL
    with the client under test: like a real analyser, it keeps its own pace.

    ``port`` is its pty; after the ``with`` block, ``broadcasts`` holds every broadcast as
    ``(monotonic time, bytes, fault note)`` (CLOCK_MONOTONIC is shared by all processes),
    ``sim_time`` the simulated seconds the analyser lived and ``log_total`` the entries of
    its wire log (to prove none were trimmed).
    """

    def __init__(self, config: Any) -> None:
        import multiprocessing

        self._context = multiprocessing.get_context("spawn")
        self._config = config
        self.port = ""
        self.broadcasts: list[tuple[float, bytes, str]] = []
        self.sim_time = 0.0
        self.log_total = 0

    def __enter__(self) -> SimulatorProcess:
        ctx = self._context
        self._ports, self._out, self._stop = ctx.Queue(), ctx.Queue(), ctx.Event()
        self._process = ctx.Process(
            target=_serve_in_process,
            args=(self._config, self._ports, self._stop, self._out),
            name="servomex-sim",
            daemon=True,
        )
        self._process.start()
        self.port = self._ports.get(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        try:
            self.broadcasts, self.sim_time, self.log_total = self._out.get(timeout=60)
        finally:
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.kill()
