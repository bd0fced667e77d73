"""AUTO protocol detection (docs/protocol.md §10): find which mode the analyser's panel is in.

The modes are exclusive and a unit in the wrong one stays silent, so detection works by
elimination:

1. drain the receive buffers (OS and application);
2. Modbus RTU: FC08 sub-function 0 with data ``AB CD`` to the configured address, each
   try waiting ``probe_timeout`` (0.5 s), ``probe_tries`` (2) tries; an exact echo — or
   any well-formed Modbus reply from that address, even an exception — means RTU;
3. drain again, then the same probe in Modbus ASCII framing;
4. listen passively for a continuous frame for max(2 × ``expected_period``,
   ``listen_floor``) seconds: joining mid-stream usually wastes the first line, so the
   window must span two frame periods; the first frame that passes the length and checksum
   checks means continuous mode;
5. otherwise raise :class:`ProtocolDetectionError` (a :class:`ServomexTimeoutError`)
   listing what was tried at which address.

Every probe runs as a job on the port's :class:`PortOwner`, each on its own Modbus line
that keeps the 50 ms line silence before its request; the session line that follows
keeps it too (its first request waits ``inter_frame_idle``). For continuous mode the
decoder used to listen, with any partial line still in it, and the frames already decoded
are handed to the session, so nothing received is lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import anyio
import anyio.abc

from ..codec.continuous import ContinuousDecoder
from ..codec.errors import (
    ErrorContext,
    ServomexConnectionError,
    ServomexError,
    ServomexModbusError,
    ServomexTimeoutError,
)
from ..codec.models import Frame, ProtocolKind
from .modbus import (
    DEFAULT_INTER_FRAME_IDLE,
    LOOPBACK_EXCHANGE,
    LOOPBACK_PROBE,
    ModbusClient,
    ModbusLine,
)
from .owner import PortOwner

__all__ = [
    "DEFAULT_PROBE_TIMEOUT",
    "DEFAULT_PROBE_TRIES",
    "DetectionAttempt",
    "DetectionResult",
    "ProtocolDetectionError",
    "detect_protocol",
    "listen_window",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_PROBE_TIMEOUT = 0.5
"""Seconds each FC08 probe try waits for its echo."""
DEFAULT_PROBE_TRIES = 2
"""Tries per Modbus framing."""
DEFAULT_LISTEN_FLOOR = 2.0
"""Shortest passive listen, whatever the expected period."""


@dataclass(frozen=True, slots=True)
class DetectionAttempt:
    """One step of AUTO detection and what came of it."""

    protocol: ProtocolKind
    address: int | None
    description: str
    outcome: str
    detected: bool = False

    def __str__(self) -> str:
        return f"{self.description}: {self.outcome}"


@dataclass(frozen=True, slots=True)
class DetectionResult:
    """What AUTO found, plus what the session needs to take over without losing bytes."""

    protocol: ProtocolKind
    attempts: tuple[DetectionAttempt, ...]
    decoder: ContinuousDecoder | None = field(default=None, repr=False)
    """Continuous mode: the decoder that listened, with any partial line still buffered."""
    frames: tuple[Frame, ...] = ()
    """Continuous mode: the frames decoded while listening, oldest first."""


class ProtocolDetectionError(ServomexTimeoutError):
    """AUTO detection recognised no protocol; ``attempts`` says what was tried, and where."""

    def __init__(
        self,
        message: str,
        *,
        attempts: tuple[DetectionAttempt, ...],
        context: ErrorContext | None = None,
    ) -> None:
        super().__init__(message, context=context)
        self.attempts = attempts


def listen_window(expected_period: float, floor: float = DEFAULT_LISTEN_FLOOR) -> float:
    """The passive listen: two frame periods (one is usually lost joining mid-frame)."""
    return max(2.0 * expected_period, floor)


async def _drain(transport: anyio.abc.ByteStream) -> None:
    reset = getattr(transport, "reset_input_buffer", None)
    if reset is not None:
        await reset()


async def _probe(
    transport: anyio.abc.ByteStream,
    owner: PortOwner,
    *,
    protocol: ProtocolKind,
    address: int,
    probe_timeout: float,
    probe_tries: int,
    inter_frame_idle: float,
    port: str,
) -> DetectionAttempt:
    name = "Modbus RTU" if protocol is ProtocolKind.MODBUS_RTU else "Modbus ASCII"
    description = (
        f"{name} FC08 loopback ({LOOPBACK_PROBE.hex(' ').upper()}) to address {address}, "
        f"{probe_tries} × {probe_timeout:g} s"
    )
    await owner.run(lambda: _drain(transport))
    async with ModbusLine(
        transport,
        protocol=protocol,
        timeout=probe_timeout,
        retries=probe_tries - 1,
        inter_frame_idle=inter_frame_idle,
        owner=owner,
        port=port,
        exchange=LOOPBACK_EXCHANGE,
    ) as line:
        client = ModbusClient(line, address)
        try:
            echo = await client.loopback(LOOPBACK_PROBE)
        except ServomexConnectionError:
            raise
        except ServomexModbusError as exc:
            return DetectionAttempt(
                protocol,
                address,
                description,
                f"exception {exc.exception_code:02X}: a Modbus unit",
                detected=True,
            )
        except ServomexTimeoutError:
            return DetectionAttempt(protocol, address, description, "no reply")
        except ServomexError as exc:
            return DetectionAttempt(protocol, address, description, f"no echo ({exc.message})")
    return DetectionAttempt(protocol, address, description, f"echo {echo.hex(' ')}", True)


async def _listen(
    transport: anyio.abc.ByteStream, window: float
) -> tuple[ContinuousDecoder, list[Frame], int, int]:
    decoder = ContinuousDecoder()
    frames: list[Frame] = []
    received = 0
    bad = 0
    with anyio.move_on_after(window):
        while not frames:
            chunk = await transport.receive()
            received += len(chunk)
            for item in decoder.feed(chunk):
                if isinstance(item, Frame):
                    frames.append(item)
                else:
                    bad += 1
    return decoder, frames, received, bad


async def detect_protocol(
    transport: anyio.abc.ByteStream,
    owner: PortOwner,
    *,
    address: int = 1,
    expected_period: float = 2.0,
    listen_floor: float = DEFAULT_LISTEN_FLOOR,
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
    probe_tries: int = DEFAULT_PROBE_TRIES,
    inter_frame_idle: float = DEFAULT_INTER_FRAME_IDLE,
    port: str | None = None,
) -> DetectionResult:
    """Find the analyser's mode on ``transport``; every byte goes through ``owner``.

    Raises:
        ProtocolDetectionError: nothing answered and no frame was heard.
        ServomexConnectionError: the link broke while probing or listening.
    """
    port_name = port if port is not None else str(getattr(transport, "port", "") or "")
    attempts: list[DetectionAttempt] = []
    for protocol in (ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII):
        attempt = await _probe(
            transport,
            owner,
            protocol=protocol,
            address=address,
            probe_timeout=probe_timeout,
            probe_tries=probe_tries,
            inter_frame_idle=inter_frame_idle,
            port=port_name,
        )
        attempts.append(attempt)
        _LOGGER.info("%s: AUTO %s", port_name, attempt)
        if attempt.detected:
            return DetectionResult(protocol, tuple(attempts))

    window = listen_window(expected_period, listen_floor)
    decoder, frames, received, bad = await owner.run(lambda: _listen(transport, window))
    description = f"continuous: listened {window:g} s for a broadcast frame"
    if frames:
        attempts.append(
            DetectionAttempt(
                ProtocolKind.CONTINUOUS_ASCII, None, description, "valid frame", detected=True
            )
        )
        return DetectionResult(
            ProtocolKind.CONTINUOUS_ASCII, tuple(attempts), decoder=decoder, frames=tuple(frames)
        )
    heard = f"{received} bytes, {bad} bad line{'s' if bad != 1 else ''}, no valid frame"
    attempts.append(DetectionAttempt(ProtocolKind.CONTINUOUS_ASCII, None, description, heard))
    tried = "; ".join(str(a) for a in attempts)
    raise ProtocolDetectionError(
        f"no protocol recognised on {port_name or 'the port'} — tried {tried}. Check the "
        "cable, baud rate and framing, the slave address (a unit at another address looks "
        "exactly like a silent one) and, for continuous mode, that the frame frequency is not "
        "0 and the expected period covers it",
        attempts=tuple(attempts),
        context=ErrorContext(
            port=port_name or None, protocol=ProtocolKind.AUTO.value, address=address
        ),
    )
