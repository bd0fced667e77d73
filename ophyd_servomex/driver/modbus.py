"""The Modbus RTU / ASCII client, over anymodbus, behind the package's own small interface.

This module and :mod:`ophyd_servomex.driver.modbus_line` are the only ones that import
anymodbus. Two classes:

* :class:`ModbusLine` (defined in :mod:`~ophyd_servomex.driver.modbus_line`, re-exported
  here with the line's defaults, exchange sizes, :class:`WireRecord` and
  :func:`wire_allowance`) — one serial line (one transport): an ``anymodbus.Bus`` over a
  non-closing wire tap, the line's timing and retry policy, and the :class:`PortOwner`
  whose task runs every transaction. Several analysers on one RS485 line (multidrop) share
  one line, so their transactions are serialised and keep the line's idle gap.
* :class:`ModbusClient` — one analyser (one slave address) on a line: the full sweep with
  its gap-free fallback, ``identify``, channel and analyser status, the calibration coil
  pulse and the FC08 loopback.

Timing and retries (docs/protocol.md §5.10): at least ``inter_frame_idle`` (50 ms) of line
silence before every request — also before the first request of a new line, which may
follow another bus's probe; ``timeout`` per attempt for the analyser to answer, plus the
wire time of the longest exchange at the line's baud rate (:func:`wire_allowance`);
reads (FC01/02/04, and the FC08 loopback, which has no side effect) are retried
``retries`` (2) times after a timeout, checksum error or malformed reply; a coil
write (FC05) is **never** retried.

Error mapping (each error carries an ``ErrorContext`` with the port, protocol, slave
address, function code, first register and the request/response bytes seen on the wire
for the last attempt):

* exception 01 → :class:`ServomexIllegalFunctionError`, 02 →
  :class:`ServomexIllegalDataAddressError`, any other code → :class:`ServomexModbusError`;
* no (complete) reply after every attempt → :class:`ServomexTimeoutError`;
* a CRC (RTU) or LRC (ASCII) mismatch on the **last** attempt →
  :class:`ServomexChecksumError` (``expected`` = the checksum the reply carried,
  ``actual`` = the one computed from its content, as in the codec). A bad checksum on an
  earlier attempt is retried, so a single corrupted reply costs one retry, not an error;
  note that the analyser *ignores* a request with a bad checksum, which the client only
  sees as a timeout;
* a well-formed reply that does not answer the request → :class:`ServomexProtocolError`,
  a malformed reply → :class:`ServomexFrameError`;
* a lost link → :class:`ServomexConnectionError` (the transport's own error when it gave one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from anymodbus.exceptions import ModbusError

from ..codec.checks import check_address, check_group
from ..codec.errors import (
    ErrorContext,
    ServomexConnectionError,
    ServomexError,
    ServomexIllegalDataAddressError,
    ServomexModbusError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ..codec.models import (
    AnalyserStatus,
    CalGroupState,
    ChannelId,
    ChannelInfo,
    ChannelKind,
    ChannelStatus,
    DeviceInfo,
    Frame,
    ProtocolKind,
    Reading,
)
from ..codec.registers import (
    ANALYSER_DISCRETE_COUNT,
    ANALYSER_DISCRETE_START,
    CAL_GROUP_DISCRETES,
    CAL_START_COIL,
    CAL_STOP_COIL,
    CHANNEL_BITS,
    CHANNEL_REGISTERS,
    FULL_SWEEP,
    REGISTERS_PER_CHANNEL,
    ReadRequest,
    analyser_status_from_bits,
    banks_from_responses,
    decode_banks,
    gap_free_plan,
    status_from_bits,
)
from .modbus_line import (
    DEFAULT_INTER_FRAME_IDLE,
    DEFAULT_RETRIES,
    LOOPBACK_EXCHANGE,
    SWEEP_EXCHANGE,
    ModbusLine,
    WireRecord,
    wire_allowance,
)

__all__ = [
    "DEFAULT_INTER_FRAME_IDLE",
    "DEFAULT_RETRIES",
    "LOOPBACK_EXCHANGE",
    "LOOPBACK_PROBE",
    "SWEEP_EXCHANGE",
    "ModbusClient",
    "ModbusLine",
    "PulseResult",
    "WireRecord",
    "wire_allowance",
]

_LOGGER = logging.getLogger(__name__)

LOOPBACK_PROBE = b"\xab\xcd"
"""The FC08 data AUTO detection sends (the reference driver's probe)."""

_CALIBRATION_COILS = frozenset({*CAL_START_COIL.values(), CAL_STOP_COIL})
"""The only coils the client ever writes (PDU addresses: groups 1–4 start, stop all)."""


def _in_chain(error: BaseException, exc: BaseException) -> bool:
    """True when ``error`` is ``exc`` or one of its causes."""
    seen: BaseException | None = exc
    while seen is not None:
        if seen is error:
            return True
        seen = seen.__cause__
    return False


def _per_slot(request: ReadRequest) -> tuple[ReadRequest, ...]:
    """A channel-map read split into one read per slot it covers (7 registers for FC04,
    8 discretes for FC02); ``(request,)`` when it covers one slot or is not slot-aligned
    (the analyser block 1000–1015)."""
    if request.function == 4:
        spans = [CHANNEL_REGISTERS[c].input_span for c in ChannelId]
    elif request.function == 2:
        spans = [CHANNEL_REGISTERS[c].status_span for c in ChannelId]
    else:
        return (request,)
    pieces = tuple(
        ReadRequest(request.function, span.start, len(span))
        for span in spans
        if request.start <= span.start and span.stop <= request.stop
    )
    if len(pieces) < 2 or sum(p.count for p in pieces) != request.count:
        return (request,)
    return pieces


@dataclass(frozen=True, slots=True)
class PulseResult:
    """What one coil pulse did: the coil, and its state read back while it was on."""

    coil: int
    readback: bool | None
    """The FC01 read-back of the coil after the ON write (``None`` if the read failed)."""


class ModbusClient:
    """One analyser at one slave address on a :class:`ModbusLine`.

    Every public method is one job on the line's owner task, so a multi-transaction
    operation (the sweep, the coil pulse) is never interleaved with another one and runs
    to its end even when the caller is cancelled.
    """

    def __init__(self, line: ModbusLine, address: int) -> None:
        self.address = check_address(
            address, context=ErrorContext(port=line.port or None, protocol=line.protocol.value)
        )
        self.line = line
        self._slave = line.slave(self.address)
        self._plan: tuple[ReadRequest, ...] | None = None
        self.fallback_channels: tuple[ChannelId, ...] | None = None
        """Set once the unit refused a broad span and the gap-free plan took over."""
        self._broad_answered = False
        """True once a broad read succeeded: later silence is a lost reply, not a refusal."""
        self.info: DeviceInfo | None = None
        """Names and units cached by :meth:`identify`."""

    @property
    def protocol(self) -> ProtocolKind:
        """``MODBUS_RTU`` or ``MODBUS_ASCII``."""
        return self.line.protocol

    @property
    def plan(self) -> tuple[ReadRequest, ...]:
        """The read plan the sweep uses: :data:`FULL_SWEEP` unless a fallback happened."""
        return self._plan if self._plan is not None else FULL_SWEEP

    # --- single transactions (run inside the owner task) -----------------------------------

    async def _call[T](
        self, function: int, register: int | None, call: Callable[[], Awaitable[T]]
    ) -> T:
        try:
            return await call()
        except ModbusError as exc:
            error = self.line.translate(exc, self.address, function=function, register=register)
            if not _in_chain(error, exc):
                error.__cause__ = exc
        # raised outside the handler: a transport error that caused ``exc`` keeps its own
        # cause, and no cycle ``error → exc → error`` is made
        raise error

    async def _read(self, request: ReadRequest) -> tuple[int, ...] | tuple[bool, ...]:
        slave, start, count = self._slave, request.start, request.count
        if request.function == 4:
            return await self._call(
                4, start, lambda: slave.read_input_registers(start, count=count)
            )
        if request.function == 2:
            return await self._call(
                2, start, lambda: slave.read_discrete_inputs(start, count=count)
            )
        if request.function == 1:
            return await self._call(1, start, lambda: slave.read_coils(start, count=count))
        raise ServomexValidationError(f"unsupported read {request}")

    async def _read_plan(
        self, plan: Sequence[ReadRequest]
    ) -> dict[ReadRequest, tuple[int, ...] | tuple[bool, ...]]:
        return {request: await self._read(request) for request in plan}

    # --- the sweep with its fallback --------------------------------------------------------

    async def _read_gap_free(
        self, select: Callable[[ReadRequest], bool]
    ) -> dict[ReadRequest, tuple[int, ...] | tuple[bool, ...]]:
        """Read the selected part of the remembered gap-free plan.

        Adjacent populated slots merge into one span, so a unit that refuses long spans
        (exception 02) may refuse a merged span too — with every slot populated it *is* the
        broad read. Such a span is read again one slot at a time, and the split is kept in
        the plan for the rest of the session.
        """
        assert self._plan is not None
        responses: dict[ReadRequest, tuple[int, ...] | tuple[bool, ...]] = {}
        for request in [r for r in self._plan if select(r)]:
            try:
                responses[request] = await self._read(request)
                continue
            except ServomexIllegalDataAddressError as exc:
                pieces = _per_slot(request)
                if len(pieces) == 1:
                    raise
                _LOGGER.warning(
                    "%s: address %s refused the merged span %s (%s); reading it slot by slot",
                    self.line.port,
                    self.address,
                    request,
                    exc.message,
                )
            for piece in pieces:
                responses[piece] = await self._read(piece)
            at = self._plan.index(request)
            self._plan = (*self._plan[:at], *pieces, *self._plan[at + 1 :])
        return responses

    async def _read_with_fallback(
        self, select: Callable[[ReadRequest], bool]
    ) -> dict[ReadRequest, tuple[int, ...] | tuple[bool, ...]]:
        if self._plan is not None:
            return await self._read_gap_free(select)
        plan = [r for r in self.plan if select(r)]
        responses: dict[ReadRequest, tuple[int, ...] | tuple[bool, ...]] = {}
        try:
            for request in plan:
                responses[request] = await self._read(request)
            self._broad_answered = True
            return responses
        except (ServomexIllegalDataAddressError, ServomexTimeoutError) as exc:
            if isinstance(exc, ServomexTimeoutError) and (
                self._broad_answered or not await self._answers_narrow_read()
            ):
                raise  # replies were lost, or the unit is silent: it is not refusing a span
            _LOGGER.warning(
                "%s: address %s refused a broad read (%s); falling back to gap-free reads",
                self.line.port,
                self.address,
                exc.message,
            )
        channels = await self._discover_channels(responses)
        self.fallback_channels = channels
        self._plan = gap_free_plan(channels)
        return await self._read_gap_free(select)

    async def _answers_narrow_read(self) -> bool:
        first = CHANNEL_REGISTERS[ChannelId.I1]
        try:
            await self._read(ReadRequest(4, first.value, REGISTERS_PER_CHANNEL))
        except ServomexTimeoutError:
            return False
        except ServomexError:
            return True
        return True

    async def _discover_channels(
        self, responses: Mapping[ReadRequest, Sequence[int] | Sequence[bool]]
    ) -> tuple[ChannelId, ...]:
        """The slots to read after a fallback: populated ones plus E1/E2, as in a frame."""
        register_reads = {r: v for r, v in responses.items() if r.function == 4}
        if not register_reads:
            for channel in ChannelId:
                request = ReadRequest(4, CHANNEL_REGISTERS[channel].value, REGISTERS_PER_CHANNEL)
                try:
                    register_reads[request] = await self._read(request)
                except (ServomexIllegalDataAddressError, ServomexTimeoutError):
                    continue
        banks = banks_from_responses(register_reads)
        frame = decode_banks(banks, timestamp=0.0, protocol=self.protocol, address=self.address)
        return tuple(
            r.channel
            for r in frame.readings
            if r.populated
            or (
                r.channel.kind is ChannelKind.EXTERNAL
                and any(
                    req.start <= CHANNEL_REGISTERS[r.channel].value < req.stop
                    for req in register_reads
                )
            )
        )

    async def _sweep(self) -> Frame:
        responses = await self._read_with_fallback(lambda r: True)
        banks = banks_from_responses(responses)
        channels = self.fallback_channels if self._plan is not None else None
        return decode_banks(
            banks,
            timestamp=time.time(),
            protocol=self.protocol,
            address=self.address,
            channels=channels,
        )

    async def sweep(self, *, publish: Callable[[Frame], None] | None = None) -> Frame:
        """One coherent poll: the three-read sweep (or the remembered gap-free plan).

        ``publish`` is called with the frame inside the port's owner task, so a frame that
        came off the wire reaches subscribers even when the caller was cancelled meanwhile.
        """
        if publish is None:
            return await self.line.run(self._sweep)

        async def job() -> Frame:
            frame = await self._sweep()
            publish(frame)
            return frame

        return await self.line.run(job)

    async def _identify(self) -> DeviceInfo:
        responses = await self._read_with_fallback(lambda r: r.function == 4)
        banks = banks_from_responses(responses)
        channels = self.fallback_channels if self._plan is not None else None
        frame = decode_banks(
            banks, timestamp=time.time(), protocol=self.protocol, channels=channels
        )
        info = DeviceInfo(
            port=self.line.port,
            protocol=self.protocol,
            address=self.address,
            channels=tuple(
                ChannelInfo(r.channel, r.name, r.unit, r.unit_text) for r in frame.readings
            ),
        )
        self.info = info
        return info

    async def identify(self) -> DeviceInfo:
        """Read every slot's name and unit (FC04) and cache them in :attr:`info`."""
        return await self.line.run(self._identify)

    # --- single-channel and status reads --------------------------------------------------

    async def read_channel(self, channel: ChannelId) -> Reading:
        """One channel: its seven registers (FC04) and eight status bits (FC02)."""
        regs = CHANNEL_REGISTERS[channel]
        value_req = ReadRequest(4, regs.value, REGISTERS_PER_CHANNEL)
        status_req = ReadRequest(2, regs.status, CHANNEL_BITS)

        async def job() -> Reading:
            responses = await self._read_plan((value_req, status_req))
            frame = decode_banks(
                banks_from_responses(responses),
                timestamp=time.time(),
                protocol=self.protocol,
                address=self.address,
                channels=(channel,),
            )
            return frame.readings[0]

        return await self.line.run(job)

    async def channel_status(self, channel: ChannelId) -> ChannelStatus:
        """One channel's eight status discretes (FC02)."""
        regs = CHANNEL_REGISTERS[channel]
        request = ReadRequest(2, regs.status, CHANNEL_BITS)

        async def job() -> ChannelStatus:
            bits = await self._read(request)
            return status_from_bits(channel, [bool(b) for b in bits[:CHANNEL_BITS]])

        return await self.line.run(job)

    async def analyser_status(self) -> AnalyserStatus:
        """Analyser fault, maintenance and the four autocal groups (FC02 1000 × 16)."""
        request = ReadRequest(2, ANALYSER_DISCRETE_START, ANALYSER_DISCRETE_COUNT)

        async def job() -> AnalyserStatus:
            bits = await self._read(request)
            return analyser_status_from_bits([bool(b) for b in bits[:ANALYSER_DISCRETE_COUNT]])

        return await self.line.run(job)

    async def calibration_status(self, group: int) -> CalGroupState:
        """One autocal group's state from the discretes 1008–1015 (FC02 1008 × 8)."""
        first = min(b for g in CAL_GROUP_DISCRETES.values() for b in (g.calibrating, g.gas))
        request = ReadRequest(2, first, 8)

        async def job() -> CalGroupState:
            bits = await self._read(request)
            padded = [False] * (first - ANALYSER_DISCRETE_START) + [bool(b) for b in bits[:8]]
            return analyser_status_from_bits(padded).group(group)

        return await self.line.run(job)

    # --- writes and diagnostics ------------------------------------------------------------

    async def pulse_coil(self, coil: int) -> PulseResult:
        """Pulse one coil: FC05 ON, FC01 read back, FC05 OFF — one job, never retried writes.

        The OFF write is attempted even when the ON write or the read-back failed (the ON
        request may have arrived with its reply lost, and a coil left at 1 would block the
        next start); a 1 → 0 transition starts nothing. The first error is raised after it.

        Only the calibration coils (start 0–3, stop-all 8) may be pulsed: any other coil
        raises :class:`ServomexValidationError` before a byte is sent, so nothing else on
        the analyser is ever written.
        """
        if isinstance(coil, bool) or coil not in _CALIBRATION_COILS:
            raise ServomexValidationError(
                f"coil {coil!r} is not a calibration coil; only "
                f"{', '.join(str(c) for c in sorted(_CALIBRATION_COILS))} may be written",
                context=ErrorContext(
                    port=self.line.port or None,
                    protocol=self.protocol.value,
                    address=self.address,
                    function_code=5,
                ),
            )
        slave = self._slave

        async def job() -> PulseResult:
            error: ServomexError | None = None
            readback: bool | None = None
            try:
                await self._call(5, coil, lambda: slave.write_coil(coil, on=True))
            except (ServomexConnectionError, ServomexModbusError):
                raise  # a lost link, or a clear refusal: the coil was not set
            except ServomexError as exc:
                error = exc  # uncertain: the request may have arrived
            if error is None:
                try:
                    bits = await self._call(1, coil, lambda: slave.read_coils(coil, count=1))
                    readback = bool(bits[0])
                except ServomexConnectionError:
                    raise
                except ServomexError as exc:
                    error = exc
            try:
                await self._call(5, coil, lambda: slave.write_coil(coil, on=False))
            except ServomexError as exc:
                if error is None:
                    raise
                _LOGGER.warning("coil %s OFF after a failed pulse also failed: %s", coil, exc)
            if error is not None:
                raise error
            return PulseResult(coil, readback)

        return await self.line.run(job)

    async def start_calibration(self, group: int) -> PulseResult:
        """Pulse the start coil of autocal group 1–4 (no gates here: the Analyzer has them)."""
        return await self.pulse_coil(CAL_START_COIL[check_group(group)])

    async def stop_calibration(self) -> PulseResult:
        """Pulse the stop-all coil."""
        return await self.pulse_coil(CAL_STOP_COIL)

    async def loopback(self, data: bytes = b"\x00\x00") -> bytes:
        """FC08 sub-function 0: the analyser echoes two bytes."""
        if len(data) != 2:
            raise ServomexValidationError(
                f"loopback data must be exactly 2 bytes, not {data!r}",
                context=ErrorContext(port=self.line.port or None, function_code=8),
            )
        slave = self._slave

        async def job() -> bytes:
            echoed: bytes = await self._call(8, None, lambda: slave.diagnostic_loopback(data))
            return echoed

        return await self.line.run(job)
