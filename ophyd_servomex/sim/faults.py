"""Fault injection: make the next replies or broadcasts go wrong in a chosen way.

``faults.inject(Fault.CORRUPT_CHECKSUM, count=2)`` spoils the next two frames the
simulator sends (Modbus replies or continuous broadcasts). Injections queue: each outgoing
frame takes the oldest pending one. What each fault does to the bytes (all exact, so tests
can compare the wire log byte for byte):

========================  ==============================================================
``CORRUPT_CHECKSUM``      RTU: both CRC bytes inverted (XOR 0xFF). ASCII: the LRC byte
                          inverted, written as hex. Continuous: the 4-digit checksum
                          inverted (XOR 0xFFFF).
``TRUNCATE``              only the first ``keep`` bytes are sent (default: half), without
                          the rest or the line ending.
``GARBAGE``               ``data`` (default :data:`DEFAULT_GARBAGE`) is sent just before the
                          frame, in the same write.
``DROP``                  nothing is sent (a dropped reply / a missed broadcast).
``DELAY``                 the frame is sent ``seconds`` late (default 0.5 s).
``DISCONNECT``            the first ``keep`` bytes (default: half) are sent, then the link is
                          closed: the pulled cable.
``WRONG_CHANNEL_COUNT``   continuous only: the header's N says ``count`` (default N + 1)
                          while the blocks stay; the checksum is recomputed, so only the
                          count check catches it.
``WRONG_ADDRESS``         Modbus only: the reply comes from slave ``address`` (default the
                          real address + 1), with a valid CRC/LRC.
========================  ==============================================================
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..codec.continuous import checksum
from ..codec.errors import ServomexValidationError
from ..codec.modbus_frames import decode_ascii, decode_rtu, encode_ascii, encode_rtu

__all__ = ["DEFAULT_GARBAGE", "Delivery", "Fault", "FaultInjector", "Framing", "apply_fault"]

DEFAULT_GARBAGE = b"\xa5\x5a\x00\xff"
"""Bytes :attr:`Fault.GARBAGE` sends when no ``data`` is given."""


class Fault(StrEnum):
    """The faults the simulator can inject."""

    @classmethod
    def parse(cls, value: str | Fault) -> Fault:
        """``Fault.DROP`` or ``"drop"``; anything else raises ``ServomexValidationError``."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(f.value for f in cls)
            raise ServomexValidationError(
                f"unknown fault {value!r}; expected one of {known}"
            ) from None

    CORRUPT_CHECKSUM = "corrupt_checksum"
    TRUNCATE = "truncate"
    GARBAGE = "garbage"
    DROP = "drop"
    DELAY = "delay"
    DISCONNECT = "disconnect"
    WRONG_CHANNEL_COUNT = "wrong_channel_count"
    WRONG_ADDRESS = "wrong_address"


class Framing(StrEnum):
    """What kind of frame a fault is applied to."""

    @classmethod
    def parse(cls, value: str | Framing) -> Framing:
        """``Framing.RTU`` or ``"rtu"``; anything else raises ``ServomexValidationError``."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(f.value for f in cls)
            raise ServomexValidationError(
                f"unknown framing {value!r}; expected one of {known}"
            ) from None

    RTU = "rtu"
    ASCII = "ascii"
    CONTINUOUS = "continuous"


_PARAMS: dict[Fault, frozenset[str]] = {
    Fault.CORRUPT_CHECKSUM: frozenset(),
    Fault.TRUNCATE: frozenset({"keep"}),
    Fault.GARBAGE: frozenset({"data"}),
    Fault.DROP: frozenset(),
    Fault.DELAY: frozenset({"seconds"}),
    Fault.DISCONNECT: frozenset({"keep"}),
    Fault.WRONG_CHANNEL_COUNT: frozenset({"count"}),
    Fault.WRONG_ADDRESS: frozenset({"address"}),
}
_ONLY: dict[Fault, frozenset[Framing]] = {
    Fault.WRONG_CHANNEL_COUNT: frozenset({Framing.CONTINUOUS}),
    Fault.WRONG_ADDRESS: frozenset({Framing.RTU, Framing.ASCII}),
}


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one frame goes out: the bytes, an extra delay, and whether the link then closes.

    ``suppressed`` means nothing is sent at all (``data`` is then empty).
    """

    data: bytes
    delay: float = 0.0
    disconnect: bool = False
    suppressed: bool = False
    note: str = ""


@dataclass(slots=True)
class _Pending:
    fault: Fault
    remaining: int
    params: dict[str, Any] = field(default_factory=dict)


class FaultInjector:
    """A thread-safe queue of pending fault injections for one link."""

    def __init__(self, framing: Framing) -> None:
        self.framing = Framing.parse(framing)
        self._pending: deque[_Pending] = deque()
        self._lock = threading.Lock()
        self._applied = 0

    def inject(self, fault: Fault | str, count: int = 1, **params: Any) -> None:
        """Apply ``fault`` to the next ``count`` frames sent (after earlier injections)."""
        kind = Fault.parse(fault)
        if count < 1:
            raise ServomexValidationError(f"count must be ≥ 1, not {count!r}")
        unknown = set(params) - _PARAMS[kind]
        if unknown:
            allowed = ", ".join(sorted(_PARAMS[kind])) or "none"
            raise ServomexValidationError(
                f"{kind.value} takes no parameter {', '.join(sorted(unknown))} (allowed: {allowed})"
            )
        only = _ONLY.get(kind)
        if only is not None and self.framing not in only:
            raise ServomexValidationError(
                f"{kind.value} does not apply to {self.framing.value} framing"
            )
        with self._lock:
            self._pending.append(_Pending(kind, count, dict(params)))

    def clear(self) -> None:
        """Forget every pending injection."""
        with self._lock:
            self._pending.clear()

    @property
    def pending(self) -> tuple[tuple[Fault, int], ...]:
        """Pending injections as ``(fault, frames left)``."""
        with self._lock:
            return tuple((p.fault, p.remaining) for p in self._pending)

    @property
    def applied(self) -> int:
        """Frames a fault has been applied to so far."""
        with self._lock:
            return self._applied

    def deliver(self, frame: bytes, address: int | None = None) -> Delivery:
        """How ``frame`` goes out: unchanged, or spoilt by the oldest pending fault."""
        with self._lock:
            if not self._pending:
                return Delivery(frame)
            pending = self._pending[0]
            pending.remaining -= 1
            if pending.remaining <= 0:
                self._pending.popleft()
            self._applied += 1
        return apply_fault(pending.fault, frame, self.framing, address=address, **pending.params)


def apply_fault(
    fault: Fault, frame: bytes, framing: Framing, *, address: int | None = None, **params: Any
) -> Delivery:
    """The :class:`Delivery` of ``frame`` with ``fault`` applied (see the module table)."""
    note = f"fault: {fault.value}"
    if fault is Fault.CORRUPT_CHECKSUM:
        return Delivery(_corrupt(frame, framing), note=note)
    if fault is Fault.TRUNCATE:
        keep = int(params.get("keep", len(frame) // 2))
        return Delivery(frame[:keep], note=f"{note} (kept {keep} of {len(frame)} bytes)")
    if fault is Fault.GARBAGE:
        garbage = bytes(params.get("data", DEFAULT_GARBAGE))
        return Delivery(garbage + frame, note=f"{note} ({len(garbage)} bytes before the frame)")
    if fault is Fault.DROP:
        return Delivery(b"", suppressed=True, note=note)
    if fault is Fault.DELAY:
        seconds = float(params.get("seconds", 0.5))
        return Delivery(frame, delay=seconds, note=f"{note} ({seconds:g} s)")
    if fault is Fault.DISCONNECT:
        keep = int(params.get("keep", len(frame) // 2))
        return Delivery(frame[:keep], disconnect=True, note=f"{note} after {keep} bytes")
    if fault is Fault.WRONG_CHANNEL_COUNT:
        return Delivery(_wrong_count(frame, params.get("count")), note=note)
    if fault is Fault.WRONG_ADDRESS:
        return Delivery(_wrong_address(frame, framing, params.get("address")), note=note)
    raise ServomexValidationError(f"unknown fault {fault!r}")  # pragma: no cover


def _split_line(frame: bytes) -> tuple[bytes, bytes]:
    content = frame.rstrip(b"\r\n")
    return content, frame[len(content) :]


def _corrupt(frame: bytes, framing: Framing) -> bytes:
    if framing is Framing.RTU:
        return frame[:-2] + bytes(b ^ 0xFF for b in frame[-2:])
    content, ending = _split_line(frame)
    if framing is Framing.ASCII:
        inverted = int(content[-2:], 16) ^ 0xFF
        return content[:-2] + b"%02X" % inverted + ending
    inverted = int(content[-5:-1], 16) ^ 0xFFFF
    return content[:-5] + b"%04X;" % inverted + ending


def _wrong_count(frame: bytes, count: object) -> bytes:
    content, ending = _split_line(frame)
    actual = int(content[31:33])
    claimed = actual + 1 if count is None else int(str(count))
    if not 0 <= claimed <= 99:
        raise ServomexValidationError(f"a channel count must be 0–99, not {claimed}")
    region = content[1:31] + b"%02d" % claimed + content[33:-5]
    return b" " + region + b"%04X;" % checksum(region) + ending


def _wrong_address(frame: bytes, framing: Framing, address: object) -> bytes:
    if framing is Framing.RTU:
        real, pdu = decode_rtu(frame)
    else:
        real, pdu = decode_ascii(frame)
    other = (real % 247) + 1 if address is None else int(str(address))
    return encode_rtu(other, pdu) if framing is Framing.RTU else encode_ascii(other, pdu)
