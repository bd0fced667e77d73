"""The continuous ASCII frame: checksum, parser, builder and a sans-I/O stream splitter.

In continuous mode the analyser broadcasts one fixed-width text line every frame period
(docs/protocol.md §4)::

     DD-MM-YY;HH:MM:SS;FM;S1S1S1S1;NN;<block>×N CCCC;<CR LF>

with each 33-byte channel block ``id;name  ;value ;unit;alarms;FM;C;W;``. Every field has a
fixed width, so the line length depends only on N (``39 + 33·N`` bytes without the line
ending) and each field sits at a fixed offset. The parser checks the shape first (length,
then checksum, then the position of every ``;``) and only then reads the fields by slicing.

Choices this module makes where the device facts are silent:

* A value that is not a finite number (``++++++``, blanks, ``nan``) decodes to ``None``;
  :func:`build_frame` writes a ``None`` (or non-finite) value as :data:`NO_VALUE_TEXT`
  (``------``), which parses back to ``None``. The analyser's own sentinel is unknown.
* An autocal pair ``S`` + digit decodes to ``IDLE`` with that gas digit; any other pair but
  ``C1``/``C2`` decodes to ``IDLE`` with ``cal_gas=None``, which :func:`build_frame` writes
  as ``S?``. ``SAMPLING``, ``DONE`` and ``STOPPED`` have no wire form and are sent as ``S``.
* An active alarm k is written as its digit (``1 3 ``); any non-space character reads as
  active.
* A lower-case hex checksum is accepted; :func:`build_frame` writes upper case.
* A line may end in CR LF, LF or a lone CR (the frame itself never holds either), and
  spaces after the closing ``;`` are not part of the frame.
"""

from __future__ import annotations

import math
import re
import time
import zlib
from collections.abc import Callable
from datetime import datetime

from .charset import to_ascii_name
from .errors import (
    ErrorContext,
    ServomexChecksumError,
    ServomexFrameError,
    ServomexParseError,
    ServomexProtocolError,
    ServomexValidationError,
)
from .models import (
    AnalyserStatus,
    CalGroupState,
    CalPhase,
    ChannelId,
    ChannelStatus,
    Frame,
    ProtocolKind,
    Reading,
    Unit,
)

__all__ = [
    "BLOCK_LENGTH",
    "HEADER_LENGTH",
    "MAX_CHANNELS",
    "MAX_LINE_LENGTH",
    "NO_VALUE_TEXT",
    "UNLABELLED_NAME",
    "ContinuousDecoder",
    "build_frame",
    "checksum",
    "frame_length",
    "looks_like_continuous",
    "parse_frame",
]

HEADER_LENGTH = 34
"""Bytes before the first channel block: the start space and the five header fields."""

BLOCK_LENGTH = 33
"""Bytes of one channel block, its closing ``;`` included."""

MAX_CHANNELS = 10
"""The analyser has ten channel slots, so a frame carries 1–10 blocks."""

MAX_LINE_LENGTH = 39 + BLOCK_LENGTH * MAX_CHANNELS + 64
"""Longest line :class:`ContinuousDecoder` buffers before dropping it (10-block frame + slack)."""

NO_VALUE_TEXT = b"------"
"""What :func:`build_frame` sends for a ``None`` value; any non-number parses to ``None``."""

UNLABELLED_NAME = b"||||||"
"""The name field of a slot that has no label."""

_PROTOCOL = "continuous"
_TRAILER = 5  # checksum (4) + closing ';'
_HEX_DIGITS = b"0123456789ABCDEFabcdef"
_IDS: dict[bytes, ChannelId] = {c.value.encode("ascii"): c for c in ChannelId}
_COUNTS: dict[bytes, int] = {b"%02d" % n: n for n in range(1, MAX_CHANNELS + 1)}
_ALARM_SPACE = 0x20

# Every byte but ';' becomes 'x', so one translate + compare checks that each separator is at
# its fixed offset and that no field holds a stray ';' (the exact token count and widths).
_LAYOUT_TABLE = bytes(0x3B if b == 0x3B else 0x78 for b in range(256))
_HEADER_WIDTHS = (9, 8, 2, 8, 2)
_BLOCK_WIDTHS = (2, 6, 6, 3, 4, 2, 1, 1)
_HEADER_FIELDS = ("date", "time", "analyser F/M", "autocal", "channel count")
_BLOCK_FIELDS = ("id", "name", "value", "unit", "alarms", "F/M", "cal", "warm-up")


def _widths(n: int) -> tuple[int, ...]:
    return (*_HEADER_WIDTHS, *(_BLOCK_WIDTHS * n), 4, 0)


def _layout(n: int) -> bytes:
    return b";".join(b"x" * w for w in _widths(n))


_LAYOUTS: dict[int, bytes] = {n: _layout(n) for n in range(1, MAX_CHANNELS + 1)}

# Decoded pieces keyed by their exact bytes: whole blocks, a block's id/name/unit, its
# flags, and the header's status fields. Each is a pure function of those bytes and the
# results are immutable, so a piece that repeats (most do, frame after frame) is decoded
# once. A cache is emptied when full, which bounds the memory.
_CACHE_LIMIT = 2048
_Label = tuple[ChannelId, str | None, Unit, str]
_Groups = tuple[CalGroupState, CalGroupState, CalGroupState, CalGroupState]
_BLOCK_CACHE: dict[bytes, Reading] = {}
_LABEL_CACHE: dict[bytes, _Label] = {}
_FLAG_CACHE: dict[bytes, ChannelStatus] = {}
_STATUS_CACHE: dict[bytes, tuple[bool, bool, _Groups]] = {}


def frame_length(channels: int) -> int:
    """Length of a frame with ``channels`` blocks, from the start space to the closing ``;``."""
    return 39 + BLOCK_LENGTH * channels


def checksum(region: bytes) -> int:
    """The continuous-mode checksum: the sum of the byte values, modulo 65536.

    ``region`` is the frame from offset 1 (after the start space) through the ``;`` just
    before the checksum field (docs/protocol.md §4.6). For idle capture frame 0 it is ``0x2A1D``.
    """
    # The low half of Adler-32 is 1 + sum(bytes) modulo 65521; for up to 256 bytes the sum
    # stays below 65521, so it is exact and runs in C. Longer regions go in 256-byte steps.
    if len(region) <= 256:
        return (zlib.adler32(region) & 0xFFFF) - 1
    view = memoryview(region).cast("B")
    total = 0
    for start in range(0, len(view), 256):
        total += (zlib.adler32(view[start : start + 256]) & 0xFFFF) - 1
    return total & 0xFFFF


def _context(line: bytes) -> ErrorContext:
    return ErrorContext(protocol=_PROTOCOL, response=line)


def _layout_error(content: bytes, n: int, line: bytes) -> ServomexFrameError:
    """Explain which separator is out of place (slow path, only for a broken frame)."""
    tokens = content.split(b";")
    expected = 8 * n + 7
    if len(tokens) != expected:
        return ServomexFrameError(
            f"frame has {len(tokens)} ';'-separated tokens, expected {expected} for {n} "
            f"channels (5 + 8·{n} + 2)",
            context=_context(line),
        )
    if tokens[-1]:
        return ServomexFrameError("frame does not end with the closing ';'", context=_context(line))
    for index, (token, width) in enumerate(zip(tokens, _widths(n), strict=True)):
        if len(token) != width:
            if index < 5:
                where = f"header field {_HEADER_FIELDS[index]!r}"
            elif index < 5 + 8 * n:
                block, field = divmod(index - 5, 8)
                where = f"block {block + 1} field {_BLOCK_FIELDS[field]!r}"
            else:
                where = "checksum field"
            return ServomexFrameError(
                f"{where} is {len(token)} bytes wide, expected {width}", context=_context(line)
            )
    return ServomexFrameError("frame layout is wrong", context=_context(line))  # pragma: no cover


def _parse_value(text: bytes) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or b"_" in text:
        return None
    return value


def _remember[K, V](cache: dict[K, V], key: K, value: V) -> V:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _decode_label(block: bytes, line: bytes) -> _Label:
    cid = _IDS.get(block[0:2])
    if cid is None:
        raise ServomexParseError(
            f"unknown channel id {block[0:2]!r}; expected one of "
            f"{', '.join(c.value for c in ChannelId)}",
            context=_context(line),
        )
    name_field = block[3:9]
    name = None if name_field == UNLABELLED_NAME else name_field.decode("latin-1").strip(" ")
    unit_text = block[17:20].decode("latin-1").strip(" \x00")
    return cid, name, Unit.from_text(unit_text), unit_text


def _decode_flags(flags: bytes) -> ChannelStatus:
    # flags = b"1 3 ;FM;C;W": alarms 1-4, fault, maintenance, calibrating, warming up
    return ChannelStatus(
        fault=flags[5] == 0x46,  # F
        maintenance=flags[6] == 0x4D,  # M
        calibrating=flags[8] == 0x43,  # C
        warming_up=flags[10] == 0x57,  # W
        alarms=(
            flags[0] != _ALARM_SPACE,
            flags[1] != _ALARM_SPACE,
            flags[2] != _ALARM_SPACE,
            flags[3] != _ALARM_SPACE,
        ),
    )


def _decode_block(block: bytes, line: bytes) -> Reading:
    # The value changes from frame to frame; the id, name, unit and flags seldom do.
    label_key = block[0:9] + block[17:20]
    label = _LABEL_CACHE.get(label_key)
    if label is None:
        label = _remember(_LABEL_CACHE, label_key, _decode_label(block, line))
    flags = block[21:32]
    status = _FLAG_CACHE.get(flags)
    if status is None:
        status = _remember(_FLAG_CACHE, flags, _decode_flags(flags))
    cid, name, unit, unit_text = label
    return Reading(cid, _parse_value(block[10:16]), name, unit, status, unit_text)


def _cal_group(group: int, pair: bytes) -> CalGroupState:
    if pair == b"C1":
        return CalGroupState(group, CalPhase.CAL_GAS_1, cal_gas=1)
    if pair == b"C2":
        return CalGroupState(group, CalPhase.CAL_GAS_2, cal_gas=2)
    gas = pair[1] - 0x30
    cal_gas = gas if pair[0] == 0x53 and 0 <= gas <= 9 else None  # S + digit
    return CalGroupState(group, CalPhase.IDLE, cal_gas=cal_gas)


def _decode_status(field: bytes) -> tuple[bool, bool, _Groups]:
    # field = b"FM;S1S1S1S1": analyser fault, maintenance, then one pair per autocal group
    groups = (
        _cal_group(1, field[3:5]),
        _cal_group(2, field[5:7]),
        _cal_group(3, field[7:9]),
        _cal_group(4, field[9:11]),
    )
    return field[0] == 0x46, field[1] == 0x4D, groups


def _parse_clock(text: bytes) -> datetime | None:
    # text = b"DD-MM-YY;HH:MM:SS"; read as day-first, 20YY, 24-hour (docs/protocol.md §4.4)
    if (
        text[2] != 0x2D
        or text[5] != 0x2D
        or text[8] != 0x3B
        or text[11] != 0x3A
        or text[14] != 0x3A
    ):
        return None
    digits = text.translate(None, b"-;:")
    if len(digits) != 12 or not digits.isdigit():
        return None
    rest, second = divmod(int(digits), 100)
    rest, minute = divmod(rest, 100)
    rest, hour = divmod(rest, 100)
    rest, year = divmod(rest, 100)
    day, month = divmod(rest, 100)
    try:
        return datetime(2000 + year, month, day, hour, minute, second)
    except ValueError:
        return None


_CONTINUOUS_SIGNATURE = re.compile(
    rb"\d\d[-/]\d\d[-/]\d\d;\d\d:\d\d|;[IDE][1-4];[^;]{0,12};[ +\-.\d]{0,10};"
)
"""What continuous-mode traffic looks like on a line: the header's date and time, or a
channel block (``;I1;Oxygen;20.378;``)."""


def looks_like_continuous(data: bytes | None) -> bool:
    """True when ``data`` (bytes read off a line) carries continuous-mode frame text.

    Used to tell a user who polls Modbus on a unit set to continuous mode what is wrong.
    """
    return bool(data) and _CONTINUOUS_SIGNATURE.search(data or b"") is not None


def parse_frame(line: bytes, *, timestamp: float | None = None) -> Frame:
    """Decode one continuous-mode line into a :class:`Frame`.

    ``line`` may end in CR LF, LF, CR or nothing, and trailing spaces after the closing
    ``;`` are ignored. ``timestamp`` (host time) defaults to
    ``time.time()``. The shape is checked in this order: start space and channel count,
    the length ``39 + 33·N``, the checksum, then the place of every ``;``.

    Raises :class:`ServomexFrameError` (wrong length, token count, field width, channel
    count or a duplicate channel), :class:`ServomexChecksumError` (``expected`` is the
    carried sum, ``actual`` the computed one) or :class:`ServomexParseError` (unknown
    channel id, non-digit channel count, non-hex checksum). A bad clock, unit, value or
    flag character never rejects the frame.
    """
    if type(line) is not bytes:
        line = bytes(line)
    content = line.rstrip(b"\r\n")
    size = len(content)
    if size < HEADER_LENGTH:
        raise ServomexFrameError(
            f"line of {size} bytes is too short for a frame (at least {frame_length(1)})",
            context=_context(line),
        )
    if content[0] != 0x20:
        raise ServomexFrameError(
            f"frame must start with a space, not {content[0:1]!r}", context=_context(line)
        )
    count_field = content[31:33]
    n = _COUNTS.get(count_field)
    if n is None:
        if count_field.isdigit():
            raise ServomexFrameError(
                f"channel count {count_field.decode()} is outside 01–{MAX_CHANNELS:02d}",
                context=_context(line),
            )
        raise ServomexParseError(
            f"channel count field {count_field!r} is not two digits", context=_context(line)
        )
    expected_size = 39 + BLOCK_LENGTH * n
    if size > expected_size and len(content.rstrip(b" ")) == expected_size:
        content = content[:expected_size]  # spaces after the closing ';' are not the frame
        size = expected_size
    if size != expected_size:
        raise ServomexFrameError(
            f"frame is {size} bytes, expected {expected_size} for {n} channels (39 + 33·{n})",
            context=_context(line),
        )
    end = HEADER_LENGTH + BLOCK_LENGTH * n
    carried_text = content[end : end + 4]
    if carried_text.strip(_HEX_DIGITS):
        raise ServomexParseError(
            f"checksum field {carried_text!r} is not 4 hex digits", context=_context(line)
        )
    carried = int(carried_text, 16)
    computed = checksum(content[1:end])
    if carried != computed:
        raise ServomexChecksumError(
            f"checksum mismatch: frame carries {carried:04X}, its content sums to {computed:04X}",
            expected=carried,
            actual=computed,
            raw=line,
            context=_context(line),
        )
    if content.translate(_LAYOUT_TABLE) != _LAYOUTS[n]:
        raise _layout_error(content, n, line)

    readings: list[Reading] = []
    for start in range(HEADER_LENGTH, end, BLOCK_LENGTH):
        block = content[start : start + BLOCK_LENGTH - 1]
        reading = _BLOCK_CACHE.get(block)
        if reading is None:
            reading = _remember(_BLOCK_CACHE, block, _decode_block(block, line))
        readings.append(reading)
    if len({r.channel for r in readings}) != n:
        ids = [r.channel.value for r in readings]
        duplicates = sorted({c for c in ids if ids.count(c) > 1})
        raise ServomexFrameError(
            f"channel {', '.join(duplicates)} appears more than once", context=_context(line)
        )

    status_field = content[19:30]
    status = _STATUS_CACHE.get(status_field)
    if status is None:
        status = _remember(_STATUS_CACHE, status_field, _decode_status(status_field))
    fault, maintenance, groups = status
    clock_field = content[1:18]
    clock = _parse_clock(clock_field)
    clock_text = (
        None
        if clock is not None
        else (clock_field[0:8] + b" " + clock_field[9:17]).decode("latin-1")
    )
    return Frame(
        readings=tuple(readings),
        analyser=AnalyserStatus(
            fault=fault,
            maintenance=maintenance,
            cal_groups=groups,
            clock=clock,
            clock_text=clock_text,
        ),
        timestamp=time.time() if timestamp is None else timestamp,
        protocol=ProtocolKind.CONTINUOUS_ASCII,
        raw=line,
    )


# --- building ---------------------------------------------------------------------------

_UNIT_FIELDS: dict[Unit, str] = {
    Unit.PERCENT: " % ",
    Unit.MILLIAMP: " mA",
    Unit.VPM: "vpm",
    Unit.PPM: "ppm",
}
_NO_VALUE = NO_VALUE_TEXT.decode("ascii")


def _wire_text(text: str, what: str, width: int) -> str:
    """Check that ``text`` fits a fixed-width field of printable ASCII without ``;``."""
    if len(text) > width:
        raise ServomexValidationError(f"{what} {text!r} is longer than {width} characters")
    if not (text.isascii() and text.isprintable()) or ";" in text:
        raise ServomexValidationError(
            f"{what} {text!r} must be printable ASCII without ';' for continuous mode"
        )
    return text


def _format_value(value: float | None, decimals: int) -> str:
    if value is None or not math.isfinite(value):
        return _NO_VALUE
    for places in range(decimals, -1, -1):
        text = f"{value:.{places}f}"
        if len(text) <= 6:
            return text.rjust(6)
    raise ServomexValidationError(f"value {value!r} does not fit the 6-character value field")


def _format_block(reading: Reading) -> str:
    cid = ChannelId.parse(reading.channel)
    try:
        return _format_fields(cid, reading)
    except ServomexValidationError as exc:
        raise exc.with_context(channel=cid.value) from None


def _format_fields(cid: ChannelId, reading: Reading) -> str:
    if reading.name is None:
        name = UNLABELLED_NAME.decode("ascii")
    else:
        name = _wire_text(to_ascii_name(reading.name), "name", 6).ljust(6)
    unit = _UNIT_FIELDS.get(reading.unit)
    if unit is None:
        unit = _wire_text(reading.unit_text.strip(" \x00"), "unit", 3).rjust(3)
    decimals = 1 if reading.unit is Unit.MILLIAMP else 3
    status = reading.status
    alarms = "".join(str(k + 1) if on else " " for k, on in enumerate(status.alarms))
    if len(alarms) != 4:
        raise ServomexValidationError(f"a channel has 4 alarm flags, not {len(alarms)}")
    return (
        f"{cid.value};{name};{_format_value(reading.value, decimals)};{unit};{alarms};"
        f"{'F' if status.fault else ' '}{'M' if status.maintenance else ' '};"
        f"{'C' if status.calibrating else ' '};{'W' if status.warming_up else ' '};"
    )


def _format_group(group: CalGroupState) -> str:
    if group.phase is CalPhase.CAL_GAS_1:
        return "C1"
    if group.phase is CalPhase.CAL_GAS_2:
        return "C2"
    if group.cal_gas is None:
        return "S?"
    if not 0 <= group.cal_gas <= 9:
        raise ServomexValidationError(
            f"calibration gas {group.cal_gas!r} of group {group.group} is not one digit"
        )
    return f"S{group.cal_gas}"


def _format_clock(analyser: AnalyserStatus) -> str:
    clock = analyser.clock
    if clock is not None:
        if not 2000 <= clock.year <= 2099:
            raise ServomexValidationError(
                f"analyser clock year {clock.year} cannot be sent as two digits (2000–2099)"
            )
        return clock.strftime("%d-%m-%y;%H:%M:%S")
    text = analyser.clock_text
    if text is None:
        return "01-01-00;00:00:00"
    if len(text) != 17 or text[8] not in " ;":
        raise ServomexValidationError(
            f"clock text {text!r} is not 'DD-MM-YY HH:MM:SS' (8 + 1 + 8 characters)"
        )
    return f"{_wire_text(text[:8], 'clock date', 8)};{_wire_text(text[9:], 'clock time', 8)}"


def build_frame(frame: Frame, *, line_ending: bytes = b"\r\n") -> bytes:
    """Encode a :class:`Frame` as the analyser sends it, the exact inverse of :func:`parse_frame`.

    Values are right-aligned in 6 characters with 1 decimal for mA and 3 otherwise, fewer
    when the number would not fit; ``None`` becomes :data:`NO_VALUE_TEXT`. Names are
    left-aligned ASCII (subscript digits such as ``₂`` are sent as ``2``), ``None`` is
    ``||||||``. The clock comes from ``analyser.clock``, else ``analyser.clock_text``,
    else ``01-01-00 00:00:00``.
    Raises :class:`ServomexValidationError` for anything the fixed-width format cannot
    carry (no or more than ten channels, a duplicate channel, a long or non-ASCII name).
    """
    try:
        return _build(frame, line_ending)
    except ServomexValidationError as exc:
        raise exc.with_context(protocol=_PROTOCOL) from None


def _build(frame: Frame, line_ending: bytes) -> bytes:
    readings = frame.readings
    n = len(readings)
    if not 1 <= n <= MAX_CHANNELS:
        raise ServomexValidationError(f"a frame carries 1–{MAX_CHANNELS} channels, not {n}")
    ids = [ChannelId.parse(r.channel) for r in readings]
    if len(set(ids)) != n:
        raise ServomexValidationError(f"duplicate channel in {', '.join(c.value for c in ids)}")
    analyser = frame.analyser
    if len(analyser.cal_groups) != 4:
        raise ServomexValidationError(
            f"the analyser has 4 calibration groups, not {len(analyser.cal_groups)}"
        )
    header = (
        f"{_format_clock(analyser)};"
        f"{'F' if analyser.fault else ' '}{'M' if analyser.maintenance else ' '};"
        f"{''.join(_format_group(g) for g in analyser.cal_groups)};{n:02d};"
    )
    region = (header + "".join(_format_block(r) for r in readings)).encode("ascii")
    return b" " + region + b"%04X;" % checksum(region) + line_ending


# --- stream splitting -------------------------------------------------------------------


def _whole_frame_shape(line: bytes) -> bool:
    """True when ``line`` starts with a space and is as long as its N field says a frame is
    (trailing spaces aside): a whole frame, good or corrupt, rather than a join fragment."""
    if len(line) < HEADER_LENGTH or line[0] != 0x20 or not line[31:33].isdigit():
        return False
    count = int(line[31:33])
    return 1 <= count <= MAX_CHANNELS and len(line.rstrip(b" ")) == frame_length(count)


class ContinuousDecoder:
    """Turn a byte stream from a continuous-mode analyser into frames and typed errors.

    Sans-I/O: :meth:`feed` takes chunks of any size (one byte works) and returns what
    they completed. Lines end in LF, CR LF or a lone CR (a frame holds neither byte);
    empty lines are skipped.
    The first line, unless it has a whole frame's shape (a leading space and the length its
    channel count gives), is the tail of a frame the receiver joined half-way: it is
    counted in :attr:`fragments` and not reported. (A tail that happens to start with a
    space is a fragment too.) Any other bad line comes back as its
    :class:`ServomexProtocolError` (``context.response`` holds the line) and decoding
    resumes at the next line. A line that grows past
    ``max_line`` bytes without an LF is dropped with a :class:`ServomexFrameError`, so
    memory stays bounded; the rest of it, up to the next LF, is skipped.

    :meth:`feed` never raises. Each frame's ``timestamp`` is ``clock()`` read once in the
    :meth:`feed` call that completed it.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, max_line: int = MAX_LINE_LENGTH
    ) -> None:
        self._clock = clock
        self._max_line = max_line
        self._buffer = bytearray()
        self._discarding = False
        self._first_line = True
        self.frames = 0
        """Frames decoded."""
        self.errors = 0
        """Bad lines reported."""
        self.fragments = 0
        """Join fragments skipped (at most one per start or :meth:`reset`)."""

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet end in a line end."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget buffered bytes and start again as if new (counters back to 0)."""
        self._buffer.clear()
        self._discarding = False
        self._first_line = True
        self.frames = self.errors = self.fragments = 0

    def feed(self, chunk: bytes) -> list[Frame | ServomexProtocolError]:
        """Add received bytes; return the frames and errors of the lines they completed."""
        out: list[Frame | ServomexProtocolError] = []
        if b"\n" not in chunk and b"\r" not in chunk:
            if self._discarding:
                return out
            self._buffer += chunk
            if len(self._buffer) > self._max_line:
                self._drop_overlong(out)
            return out
        data = bytes(self._buffer) + chunk if self._buffer else bytes(chunk)
        lines = data.replace(b"\r", b"\n").split(b"\n")
        tail = lines.pop()
        now = self._clock()
        for line in lines:
            if self._discarding:
                self._discarding = False  # the end of a line already dropped as overlong
                continue
            self._line(line, now, out)
        self._buffer = bytearray(tail)
        if len(self._buffer) > self._max_line:
            self._drop_overlong(out)
        return out

    def flush(self) -> list[Frame | ServomexProtocolError]:
        """End of stream: decode the buffered bytes as a last line even though no LF came."""
        out: list[Frame | ServomexProtocolError] = []
        line = bytes(self._buffer)
        self._buffer.clear()
        if self._discarding:
            self._discarding = False
        elif line:
            self._line(line, self._clock(), out)
        return out

    def _drop_overlong(self, out: list[Frame | ServomexProtocolError]) -> None:
        line = bytes(self._buffer)
        self._buffer.clear()
        self._discarding = True
        self._first_line = False
        self.errors += 1
        out.append(
            ServomexFrameError(
                f"no line end within {self._max_line} bytes; dropped the line",
                context=_context(line),
            )
        )

    def _line(self, line: bytes, now: float, out: list[Frame | ServomexProtocolError]) -> None:
        if not line:
            return
        if self._first_line:
            self._first_line = False
            if not _whole_frame_shape(line):
                self.fragments += 1
                return
        try:
            frame = parse_frame(line, timestamp=now)
        except ServomexProtocolError as exc:
            self.errors += 1
            out.append(exc)
            return
        except Exception as exc:  # pragma: no cover
            # parse_frame raises only protocol errors; this keeps a reader loop alive anyway.
            self.errors += 1
            error = ServomexParseError(f"undecodable line: {exc}", context=_context(line))
            error.__cause__ = exc
            out.append(error)
            return
        self.frames += 1
        out.append(frame)
