"""Sans-I/O request splitters: turn the master's byte stream into Modbus requests.

Bytes go in with their arrival time; out come :class:`Received` items, either a request
(checked CRC/LRC, ``pdu`` set) or bytes discarded with a reason. Neither splitter ever
raises on input.

RTU has no delimiter, so :class:`RtuRequestSplitter` finds requests by their function
code's length (:func:`rtu_request_length`) and a good CRC, at the first position in the
buffer where one is complete. Bytes before it are discarded (garbage, a frame with a bad
CRC). A partial request left when the line has been silent for ``silence`` seconds is
discarded too, so a fragment cannot swallow the next request.

ASCII frames run from ``:`` to LF; :class:`AsciiRequestSplitter` discards bytes before a
``:``, restarts on a ``:`` inside a frame, discards frames with a bad LRC or bad hex, and
drops an unfinished frame after ``silence`` seconds (the Modbus-ASCII default is 1 s).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..codec.errors import ServomexProtocolError
from ..codec.modbus_frames import crc16, decode_ascii, rtu_request_length

__all__ = [
    "MAX_BUFFER",
    "AsciiRequestSplitter",
    "Received",
    "RequestSplitter",
    "RtuRequestSplitter",
]

MAX_BUFFER = 1024
"""Bytes a splitter holds without finding a request before it discards the oldest."""


@dataclass(frozen=True, slots=True)
class Received:
    """One item out of a splitter: a request (``pdu`` set) or discarded bytes (``reason``)."""

    data: bytes
    started: float
    """Arrival time of the first byte."""
    ended: float
    """Arrival time of the last byte (or when silence discarded the bytes)."""
    address: int | None = None
    pdu: bytes | None = None
    reason: str = ""

    @property
    def is_request(self) -> bool:
        """True for a complete request with a good checksum."""
        return self.pdu is not None


class RequestSplitter:
    """Common buffer handling: bytes with their arrival times, and the silence rule."""

    def __init__(self, silence: float) -> None:
        self.silence = silence
        self._buf = bytearray()
        self._times: list[float] = []

    @property
    def pending(self) -> int:
        """Bytes held, waiting for the rest of a request."""
        return len(self._buf)

    def deadline(self) -> float | None:
        """When the held bytes will be discarded if nothing more arrives (None: none held)."""
        return self._times[-1] + self.silence if self._times else None

    def feed(self, data: bytes, now: float) -> list[Received]:
        """Add bytes that arrived at ``now``; return what they completed."""
        out = self.expire(now)
        self._buf += data
        self._times.extend([now] * len(data))
        self._split(out)
        if len(self._buf) > MAX_BUFFER:
            self._discard(len(self._buf) - MAX_BUFFER, "no request found", out)
        return out

    def expire(self, now: float) -> list[Received]:
        """Discard the held bytes if the line has been silent for ``silence`` seconds."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        out: list[Received] = []
        self._discard(len(self._buf), self._silence_reason(), out, now)
        return out

    def _silence_reason(self) -> str:
        """Why the bytes held when the line fell silent are discarded."""
        return "incomplete request cut off by line silence"

    def reset(self) -> None:
        """Forget everything held (a new client)."""
        self._buf.clear()
        self._times.clear()

    def _split(self, out: list[Received]) -> None:
        raise NotImplementedError

    def _take(self, n: int) -> tuple[bytes, float, float]:
        data = bytes(self._buf[:n])
        started, ended = self._times[0], self._times[n - 1]
        del self._buf[:n]
        del self._times[:n]
        return data, started, ended

    def _discard(self, n: int, reason: str, out: list[Received], now: float | None = None) -> None:
        if n <= 0:
            return
        data, started, ended = self._take(n)
        out.append(Received(data, started, ended if now is None else now, reason=reason))


class RtuRequestSplitter(RequestSplitter):
    """Split an RTU byte stream into requests (see the module notes)."""

    def __init__(self, silence: float = 0.02) -> None:
        super().__init__(silence)

    def _split(self, out: list[Received]) -> None:
        while self._buf:
            found = self._find()
            if found is None:
                return
            start, length = found
            if start:
                reason = "bad CRC or garbage before a request"
                self._discard(start, reason, out)
            data, started, ended = self._take(length)
            out.append(Received(data, started, ended, address=data[0], pdu=data[1:-2]))

    def _silence_reason(self) -> str:
        length = rtu_request_length(bytes(self._buf))
        if length is not None and length <= len(self._buf):
            return "bad CRC (or not a request)"
        return super()._silence_reason()

    def _find(self) -> tuple[int, int] | None:
        """The first (position, length) of a complete request with a good CRC."""
        buf = bytes(self._buf)
        for start in range(len(buf)):
            length = rtu_request_length(buf[start:])
            if length is None or start + length > len(buf):
                continue
            if crc16(buf[start : start + length]) == 0:
                return start, length
        return None


class AsciiRequestSplitter(RequestSplitter):
    """Split a Modbus-ASCII byte stream into requests (see the module notes)."""

    MAX_LINE = 513
    """The longest ASCII ADU: ``:`` + 2 × 255 hex digits + CR LF."""

    def __init__(self, silence: float = 1.0) -> None:
        super().__init__(silence)

    def _split(self, out: list[Received]) -> None:
        while self._buf:
            colon = self._buf.find(b":")
            if colon < 0:  # junk: held until a ':' or silence, so it is logged in one piece
                if len(self._buf) > self.MAX_LINE:
                    self._discard(len(self._buf), "bytes outside an ASCII frame", out)
                return
            if colon:
                self._discard(colon, "bytes outside an ASCII frame", out)
            end = self._buf.find(b"\n")
            restart = self._buf.find(b":", 1)
            if restart >= 0 and (end < 0 or restart < end):
                self._discard(restart, "ASCII frame restarted by ':'", out)
                continue
            if end < 0:
                if len(self._buf) > self.MAX_LINE:
                    self._discard(len(self._buf), "ASCII frame too long", out)
                return
            data, started, ended = self._take(end + 1)
            try:
                address, pdu = decode_ascii(data)
            except ServomexProtocolError as exc:
                out.append(Received(data, started, ended, reason=exc.message))
                continue
            out.append(Received(data, started, ended, address=address, pdu=pdu))
