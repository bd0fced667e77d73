"""The Modbus line layer, over anymodbus: one serial line, its timing and its errors.

:class:`ModbusLine` is one serial line (one transport): an ``anymodbus.Bus`` over a
non-closing wire tap (:class:`WireRecord` is what the tap saw of the last attempt), the
line's timing and retry policy, and the :class:`PortOwner` whose task runs every
transaction. Several analysers on one RS485 line (multidrop) share one line, so their
transactions are serialised and keep the line's idle gap. Also here: the line defaults
(``DEFAULT_INTER_FRAME_IDLE``, ``DEFAULT_RETRIES``), the exchange sizes and
:func:`wire_allowance` that time each attempt, and the translation of anymodbus errors
into the package's error hierarchy (:meth:`ModbusLine.translate`).

This module and :mod:`ophyd_servomex.driver.modbus` (the per-analyser client, which
re-exports the public names here) are the only ones that import anymodbus. The timing,
retry and error-mapping rules are described in :mod:`ophyd_servomex.driver.modbus`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
from anymodbus import Bus, BusConfig, Framing, RetryPolicy, Slave, TimingConfig
from anymodbus.exceptions import (
    BusClosedError,
    ChecksumError,
    ConfigurationError,
    ConnectionLostError,
    FrameError,
    FrameTimeoutError,
    IllegalDataAddressError,
    IllegalFunctionError,
    LRCError,
    ModbusError,
    ModbusExceptionResponse,
    UnexpectedResponseError,
)
from anymodbus.transaction import TransactionInfo, TransactionOutcome

from ..codec.checks import check_count, check_non_negative
from ..codec.continuous import looks_like_continuous
from ..codec.errors import (
    ErrorContext,
    ServomexChecksumError,
    ServomexConnectionError,
    ServomexError,
    ServomexFrameError,
    ServomexIllegalDataAddressError,
    ServomexIllegalFunctionError,
    ServomexModbusError,
    ServomexProtocolError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ..codec.modbus_frames import crc16, lrc
from ..codec.models import ProtocolKind
from ..codec.options import DEFAULT_INTER_FRAME_IDLE, DEFAULT_RETRIES
from ..codec.registers import FULL_SWEEP
from ..transport import NonClosing
from .owner import PortOwner
from .retry_log import install_retry_log_filter

__all__ = [
    "DEFAULT_INTER_FRAME_IDLE",
    "DEFAULT_RETRIES",
    "LOOPBACK_EXCHANGE",
    "SWEEP_EXCHANGE",
    "ModbusLine",
    "WireRecord",
    "wire_allowance",
]


# How long after an uncertain attempt (timeout, damaged reply) a late reply may still
# arrive: the analyser's slowest turnaround seen is ~40 ms; allow generously, plus the
# wire time of the longest reply. The bus reads and drops anything arriving in it.
_LATE_REPLY_TURNAROUND = 0.1
_MAX_RTU_REPLY = 256
_DEFAULT_BAUD = 19200
_BITS_PER_CHAR = 10

_FRAMING = {ProtocolKind.MODBUS_RTU: Framing.RTU, ProtocolKind.MODBUS_ASCII: Framing.ASCII}


def _max_reply_chars(protocol: ProtocolKind) -> int:
    return _MAX_RTU_REPLY if protocol is ProtocolKind.MODBUS_RTU else 2 * _MAX_RTU_REPLY + 3


def _rtu_to_chars(protocol: ProtocolKind, rtu_bytes: int) -> int:
    """Characters on the wire for an RTU ADU of ``rtu_bytes`` (ASCII: hex, ':' and CR LF;
    the LRC is one byte less than the CRC)."""
    return rtu_bytes if protocol is ProtocolKind.MODBUS_RTU else 2 * (rtu_bytes - 1) + 3


SWEEP_EXCHANGE = (8, 5 + 2 * max(r.count for r in FULL_SWEEP if r.function == 4))
"""RTU bytes of the longest request and reply a client makes: the FC04 read of the map."""
LOOPBACK_EXCHANGE = (8, 8)
"""RTU bytes of an FC08 loopback request and its echo (all an AUTO probe line sends)."""


def wire_allowance(
    protocol: ProtocolKind, baud: int, exchange: tuple[int, int] = SWEEP_EXCHANGE
) -> float:
    """Seconds the longest ``exchange`` (RTU request and reply bytes) spends on the wire.

    The default is the sweep's FC04 read of the whole register map: an 8-byte request and
    a reply of 5 + 2 × 70 bytes (RTU; ASCII sends each byte as two hex characters). At
    19200 baud that is 0.08 s (RTU) or 0.16 s (ASCII); at 2400 baud 0.64 s or 1.3 s — more
    than the 1 s a default timeout gives the analyser to answer.
    """
    request, reply = exchange
    chars = _rtu_to_chars(protocol, request) + _rtu_to_chars(protocol, reply)
    return chars * _BITS_PER_CHAR / baud


@dataclass(frozen=True, slots=True)
class WireRecord:
    """The bytes of the last attempt on a line, as the client saw them."""

    request: bytes | None
    response: bytes | None


class _WireTap(NonClosing):
    """The stream anymodbus drives: a :class:`NonClosing` lend of the transport that also
    records the last exchange (``Bus.aclose`` closes its stream; the transport outlives
    the bus)."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        super().__init__(inner)
        self.request: bytes | None = None
        self.response = bytearray()

    async def send(self, item: bytes) -> None:
        self.request = bytes(item)
        self.response = bytearray()
        await super().send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        chunk = await super().receive(max_bytes)
        self.response += chunk
        return chunk

    def snapshot(self) -> WireRecord:
        return WireRecord(self.request, bytes(self.response) if self.response else None)


def _port_name(transport: object) -> str:
    return str(getattr(transport, "port", "") or "")


def _baudrate(transport: object) -> int:
    settings = getattr(transport, "settings", None)
    return int(getattr(settings, "baudrate", _DEFAULT_BAUD) or _DEFAULT_BAUD)


class ModbusLine:
    """One Modbus serial line: the bus, its timing and the task that owns the port.

    Use as an async context manager (entered and left in the same task). Pass ``owner``
    to share an already running :class:`PortOwner` (AUTO detection hands its owner over);
    otherwise the line runs its own. The transport is never closed by the line.
    ``exchange`` is the RTU size of the longest request and reply the line will carry; its
    wire time at the transport's baud rate is added to ``timeout`` for every attempt.
    """

    def __init__(
        self,
        transport: anyio.abc.ByteStream,
        *,
        protocol: ProtocolKind = ProtocolKind.MODBUS_RTU,
        timeout: float = 1.0,
        retries: int = DEFAULT_RETRIES,
        inter_frame_idle: float = DEFAULT_INTER_FRAME_IDLE,
        owner: PortOwner | None = None,
        port: str | None = None,
        exchange: tuple[int, int] = SWEEP_EXCHANGE,
    ) -> None:
        if protocol not in _FRAMING:
            raise ServomexValidationError(f"a Modbus line needs RTU or ASCII, not {protocol}")
        if not 0 < timeout <= 60:
            raise ServomexValidationError(f"timeout must be within (0, 60] s, not {timeout!r}")
        self.transport = transport
        self.protocol = protocol
        self.timeout = timeout
        self.retries = check_count("retries", retries)
        self.inter_frame_idle = check_non_negative("inter_frame_idle", inter_frame_idle)
        self.port = port if port is not None else _port_name(transport)
        baud = _baudrate(transport)
        self.baudrate = baud
        """The line's baud rate (from the transport's settings, else 19200)."""
        self.wire_allowance = wire_allowance(protocol, baud, exchange)
        """Added to ``timeout`` per attempt: the longest request and reply on the wire."""
        window = _LATE_REPLY_TURNAROUND + _max_reply_chars(protocol) * _BITS_PER_CHAR / baud
        self._tap = _WireTap(transport)
        install_retry_log_filter()  # a retry that succeeds is no console warning
        self.bus = Bus(
            self._tap,
            framing=_FRAMING[protocol],
            config=BusConfig(
                # ``timeout`` is the analyser's time to answer; the bytes' own time on the
                # wire comes on top, or a slow line (2400 baud) times out every full read.
                request_timeout=timeout + self.wire_allowance,
                timing=TimingConfig(
                    inter_frame_idle=inter_frame_idle,
                    # The first request of this bus may follow another bus's traffic
                    # (AUTO's probe): keep the gap before it too.
                    startup_settle=inter_frame_idle,
                    late_reply_window=window,
                ),
                retries=RetryPolicy(retries=retries, retry_idempotent_only=True),
            ),
        )
        self.bus.add_transaction_observer(self._observe)
        self._own_owner = owner is None
        self.owner = owner if owner is not None else PortOwner(port=self.port)
        self._stack: AsyncExitStack | None = None
        self.attempts = 0
        """Request attempts sent on this line (retries included)."""
        self.retried = 0
        """Attempts that failed and were retried."""
        self.failures: dict[str, int] = {}
        """Failed attempts by outcome (``timeout``, ``checksum_error`` …)."""

    def _observe(self, info: TransactionInfo) -> None:
        self.attempts += 1
        if info.will_retry:
            self.retried += 1
        if info.outcome not in (TransactionOutcome.REPLY, TransactionOutcome.BROADCAST_SENT):
            key = info.outcome.value
            self.failures[key] = self.failures.get(key, 0) + 1

    @property
    def wire(self) -> WireRecord:
        """The request and response bytes of the line's last attempt."""
        return self._tap.snapshot()

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        if self._own_owner:
            await stack.enter_async_context(self.owner)
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.bus.aclose()  # closes the tap only, never the transport
        if self._stack is not None:
            await self._stack.__aexit__(exc_type, exc, tb)

    async def run[T](self, job: Callable[[], Awaitable[T]]) -> T:
        """Run ``job`` (one or more transactions) inside the line's owner task."""
        return await self.owner.run(job)

    def slave(self, address: int) -> Slave:
        """The anymodbus handle for one slave address (internal use)."""
        return self.bus.slave(address)

    def context(
        self, address: int, *, function: int | None = None, register: int | None = None
    ) -> ErrorContext:
        """The error context of a request on this line."""
        wire = self.wire
        return ErrorContext(
            port=self.port or None,
            protocol=self.protocol.value,
            address=address,
            function_code=function,
            register=register,
            request=wire.request,
            response=wire.response,
        )

    def translate(
        self, exc: ModbusError, address: int, *, function: int, register: int | None
    ) -> ServomexError:
        """Map an anymodbus error (after retries) onto the package's error hierarchy.

        When the bytes read back look like continuous-mode frames, the message says so:
        the unit's front panel is in continuous mode, not this Modbus mode.
        """
        error = self._translate(exc, address, function=function, register=register)
        if not isinstance(error, ServomexConnectionError) and looks_like_continuous(
            error.context.response
        ):
            error.message = (
                "the line carries continuous-mode frames; try protocol continuous "
                f"(the analyser broadcasts instead of answering Modbus): {error.message}"
            )
        return error

    def _translate(
        self, exc: ModbusError, address: int, *, function: int, register: int | None
    ) -> ServomexError:
        ctx = self.context(address, function=function, register=register)
        what = _describe_request(function, register)
        attempts = 1 if function in (5, 15) else self.retries + 1
        if isinstance(exc, ModbusExceptionResponse):
            code = exc.exception_code
            if isinstance(exc, IllegalFunctionError):
                return ServomexIllegalFunctionError(
                    f"the analyser at address {address} refused {what}: exception 01, "
                    "illegal function",
                    exception_code=code,
                    context=ctx,
                )
            if isinstance(exc, IllegalDataAddressError):
                return ServomexIllegalDataAddressError(
                    f"the analyser at address {address} refused {what}: exception 02, "
                    "illegal data address",
                    exception_code=code,
                    context=ctx,
                )
            return ServomexModbusError(
                f"the analyser at address {address} refused {what}: exception {code:02X}",
                exception_code=code,
                context=ctx,
            )
        if isinstance(exc, FrameTimeoutError) and ctx.response:
            return ServomexTimeoutError(
                f"an incomplete reply from address {address} to {what}: {len(ctx.response)} "
                f"bytes arrived, then nothing within {self.timeout:g} s "
                f"({attempts} attempt{'s' if attempts > 1 else ''}); the reply was cut off or "
                "its byte count is wrong",
                context=ctx,
            )
        if isinstance(exc, FrameTimeoutError):
            return ServomexTimeoutError(
                f"no reply from address {address} to {what} within {self.timeout:g} s "
                f"(+ {self.wire_allowance:.2f} s wire time at {self.baudrate} baud) "
                f"({attempts} attempt{'s' if attempts > 1 else ''}): check the slave address, "
                "that the front panel is in this Modbus mode (a unit in continuous mode never "
                "answers), the wiring and the baud rate",
                context=ctx,
            )
        if isinstance(exc, ChecksumError):
            expected, actual = _checksums(ctx.response, ascii_framing=isinstance(exc, LRCError))
            kind = "LRC" if isinstance(exc, LRCError) else "CRC"
            return ServomexChecksumError(
                f"{kind} mismatch in the reply from address {address} to {what} "
                f"after {attempts} attempt{'s' if attempts > 1 else ''}",
                expected=expected,
                actual=actual,
                raw=ctx.response or b"",
                context=ctx,
            )
        if isinstance(exc, UnexpectedResponseError):
            return ServomexProtocolError(
                f"the reply from address {address} does not answer {what}: {exc}", context=ctx
            )
        if isinstance(exc, FrameError):
            return ServomexFrameError(
                f"malformed reply from address {address} to {what}: {exc}", context=ctx
            )
        if isinstance(exc, (ConnectionLostError, BusClosedError)):
            cause = exc.__cause__
            while cause is not None and not isinstance(cause, ServomexConnectionError):
                cause = cause.__cause__
            if isinstance(cause, ServomexConnectionError):
                return cause.with_context(
                    protocol=ctx.protocol,
                    address=address,
                    function_code=function,
                    register=register,
                    request=ctx.request,
                )
            return ServomexConnectionError(f"link lost during {what}: {exc}", context=ctx)
        if isinstance(exc, ConfigurationError):
            return ServomexValidationError(f"invalid request {what}: {exc}", context=ctx)
        return ServomexProtocolError(f"{what} failed: {exc}", context=ctx)


def _describe_request(function: int, register: int | None) -> str:
    names = {
        1: "FC01 read coils",
        2: "FC02 read discrete inputs",
        4: "FC04 read input registers",
        5: "FC05 write coil",
        8: "FC08 loopback",
    }
    text = names.get(function, f"FC{function:02d}")
    return text if register is None else f"{text} at {register}"


def _checksums(raw: bytes | None, *, ascii_framing: bool) -> tuple[int, int]:
    """(carried, computed) checksum of a damaged reply; -1 where it cannot be told."""
    if not raw:
        return -1, -1
    try:
        if ascii_framing:
            start = raw.rindex(b":")
            end = raw.index(b"\r", start)
            body = bytes.fromhex(raw[start + 1 : end].decode("ascii"))
            return body[-1], lrc(body[:-1])
        if len(raw) < 4:
            return -1, -1
        return int.from_bytes(raw[-2:], "little"), crc16(raw[:-2])
    except (ValueError, IndexError):
        return -1, -1
