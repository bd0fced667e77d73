"""Modbus serial-line framing: CRC-16, LRC, RTU and ASCII ADUs, and request/response PDUs.

Pure functions over bytes (docs/protocol.md §5.1, §5.8, §5.9, §5.11). The simulated analyser
uses them to split, check and answer requests; tests use them to check bytes on the wire.
The driver's own client speaks through anymodbus, so nothing here is on its hot path.

Checksum errors follow the convention of the continuous codec: ``expected`` is the value
the frame *carries*, ``actual`` the value computed from its content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from .errors import ErrorContext, ServomexChecksumError, ServomexFrameError, ServomexValidationError

__all__ = [
    "COIL_OFF",
    "COIL_ON",
    "MAX_PDU_LENGTH",
    "MAX_READ_BITS",
    "MAX_READ_REGISTERS",
    "MAX_WRITE_COILS",
    "RTU_FALLBACK_REQUEST_LENGTH",
    "ExceptionCode",
    "FunctionCode",
    "ModbusRequest",
    "build_exception",
    "build_loopback_response",
    "build_read_bits_response",
    "build_read_registers_response",
    "build_write_coil_response",
    "build_write_coils_response",
    "crc16",
    "decode_ascii",
    "decode_rtu",
    "encode_ascii",
    "encode_rtu",
    "lrc",
    "pack_bits",
    "parse_request",
    "rtu_request_length",
    "unpack_bits",
]

MAX_PDU_LENGTH = 253
"""Longest PDU a serial-line ADU may carry (256 bytes minus address and CRC)."""
MAX_READ_BITS = 2000
"""Most coils or discrete inputs one FC01/FC02 request may ask for."""
MAX_READ_REGISTERS = 125
"""Most registers one FC03/FC04 request may ask for."""
MAX_WRITE_COILS = 1968
"""Most coils one FC15 request may write."""
COIL_ON = 0xFF00
"""FC05 value that switches a coil on."""
COIL_OFF = 0x0000
"""FC05 value that switches a coil off."""


class FunctionCode(IntEnum):
    """The Modbus function codes this package names (the analyser serves 1, 2, 4, 5, 8, 15)."""

    READ_COILS = 0x01
    READ_DISCRETE_INPUTS = 0x02
    READ_HOLDING_REGISTERS = 0x03
    READ_INPUT_REGISTERS = 0x04
    WRITE_SINGLE_COIL = 0x05
    WRITE_SINGLE_REGISTER = 0x06
    DIAGNOSTICS = 0x08
    WRITE_MULTIPLE_COILS = 0x0F
    WRITE_MULTIPLE_REGISTERS = 0x10


class ExceptionCode(IntEnum):
    """Modbus exception codes (the analyser is documented to use 01 and 02)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04


# --- checksums ------------------------------------------------------------------------------


def _crc_table() -> tuple[int, ...]:
    table: list[int] = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` (reflected polynomial 0xA001, initial value 0xFFFF).

    The result is an integer; on the wire it is sent low byte first
    (``crc16(b"\\x1e\\x04\\x00\\x00\\x00\\x46") == 0x9773`` travels as ``73 97``).
    """
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def lrc(data: bytes) -> int:
    """Modbus-ASCII LRC: the two's complement of the 8-bit sum of ``data``."""
    return -sum(data) & 0xFF


# --- ADUs -----------------------------------------------------------------------------------


def _check_adu_parts(address: int, pdu: bytes) -> None:
    if not 0 <= address <= 255:
        raise ServomexValidationError(f"Modbus address must be 0–255, not {address!r}")
    if not 1 <= len(pdu) <= MAX_PDU_LENGTH:
        raise ServomexValidationError(f"a PDU must hold 1–{MAX_PDU_LENGTH} bytes, not {len(pdu)}")


def encode_rtu(address: int, pdu: bytes) -> bytes:
    """An RTU ADU: address, PDU, CRC-16 low byte first."""
    _check_adu_parts(address, pdu)
    body = bytes([address]) + pdu
    return body + crc16(body).to_bytes(2, "little")


def decode_rtu(adu: bytes) -> tuple[int, bytes]:
    """Split an RTU ADU into ``(address, pdu)`` after checking its CRC.

    Raises ``ServomexFrameError`` for fewer than 4 bytes and ``ServomexChecksumError``
    (``expected`` = carried CRC, ``actual`` = computed CRC, ``raw`` = the ADU) on a mismatch.
    """
    context = ErrorContext(protocol="modbus-rtu", response=bytes(adu))
    if len(adu) < 4:
        raise ServomexFrameError(
            f"an RTU frame needs at least 4 bytes, got {len(adu)}", context=context
        )
    carried = int.from_bytes(adu[-2:], "little")
    computed = crc16(adu[:-2])
    if carried != computed:
        raise ServomexChecksumError(
            f"RTU CRC mismatch: frame carries {carried:04X}, content gives {computed:04X}",
            expected=carried,
            actual=computed,
            raw=bytes(adu),
            context=context.merged(address=adu[0]),
        )
    return adu[0], bytes(adu[1:-2])


def encode_ascii(address: int, pdu: bytes) -> bytes:
    """An ASCII ADU: ``:``, upper-case hex of address + PDU + LRC, then CR LF."""
    _check_adu_parts(address, pdu)
    body = bytes([address]) + pdu
    return b":" + (body + bytes([lrc(body)])).hex().upper().encode("ascii") + b"\r\n"


_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")


def decode_ascii(line: bytes) -> tuple[int, bytes]:
    """Split an ASCII ADU (with or without its CR LF / LF) into ``(address, pdu)``.

    Raises ``ServomexFrameError`` when the line does not start with ``:``, holds a non-hex
    character or an odd number of digits, or is shorter than address + function + LRC;
    ``ServomexChecksumError`` (carried vs computed LRC) when the LRC does not match.
    Lower-case hex digits are accepted.
    """
    raw = bytes(line)
    context = ErrorContext(protocol="modbus-ascii", response=raw)
    text = raw.removesuffix(b"\n").removesuffix(b"\r")
    if not text.startswith(b":"):
        raise ServomexFrameError("an ASCII frame must start with ':'", context=context)
    digits = text[1:]
    if not digits or any(c not in _HEX_DIGITS for c in digits):
        raise ServomexFrameError("an ASCII frame holds a non-hex character", context=context)
    if len(digits) % 2:
        raise ServomexFrameError(
            f"an ASCII frame needs an even number of hex digits, got {len(digits)}",
            context=context,
        )
    body = bytes.fromhex(digits.decode("ascii"))
    if len(body) < 3:
        raise ServomexFrameError(
            f"an ASCII frame needs address, function and LRC, got {len(body)} bytes",
            context=context,
        )
    carried, computed = body[-1], lrc(body[:-1])
    if carried != computed:
        raise ServomexChecksumError(
            f"ASCII LRC mismatch: frame carries {carried:02X}, content gives {computed:02X}",
            expected=carried,
            actual=computed,
            raw=raw,
            context=context.merged(address=body[0]),
        )
    return body[0], body[1:-1]


RTU_FALLBACK_REQUEST_LENGTH = 8
"""Length assumed for an RTU request whose function code has no known request size.

Eight bytes (address, function, four data bytes, CRC) is the size of every fixed-size
read/write request; a request of another size fails its CRC check and the receiver
resynchronises (the simulated slave drops one byte and retries, and resets on line silence).
"""

# function code -> fixed request length (address + PDU + CRC)
_FIXED_REQUEST_LENGTH: dict[int, int] = {
    0x01: 8,
    0x02: 8,
    0x03: 8,
    0x04: 8,
    0x05: 8,
    0x06: 8,
    0x07: 4,
    0x08: 8,
    0x0B: 4,
    0x0C: 4,
    0x11: 4,
    0x16: 10,
}
# function code -> (offset of the byte-count byte, bytes before the data + CRC)
_COUNTED_REQUEST_LENGTH: dict[int, tuple[int, int]] = {
    0x0F: (6, 9),
    0x10: (6, 9),
    0x14: (2, 5),
    0x15: (2, 5),
    0x17: (10, 13),
}


def rtu_request_length(buf: bytes) -> int | None:
    """Length in bytes of the RTU *request* that starts ``buf``, or ``None`` if not yet known.

    FC01–06 and FC08 requests are 8 bytes; FC15/FC16 are 9 + their byte count (known once
    7 bytes have arrived); the other standard serial-line codes have their standard sizes.
    Any other function code (including exception-flagged bytes, i.e. garbage) gets
    :data:`RTU_FALLBACK_REQUEST_LENGTH`. FC08 is assumed to carry two data bytes, as
    sub-function 0 (return query data) does on this analyser.
    """
    if len(buf) < 2:
        return None
    function = buf[1]
    fixed = _FIXED_REQUEST_LENGTH.get(function)
    if fixed is not None:
        return fixed
    counted = _COUNTED_REQUEST_LENGTH.get(function)
    if counted is not None:
        offset, overhead = counted
        if len(buf) <= offset:
            return None
        return overhead + buf[offset]
    return RTU_FALLBACK_REQUEST_LENGTH


# --- PDUs -----------------------------------------------------------------------------------


def pack_bits(bits: Sequence[bool]) -> bytes:
    """Pack bits into bytes, the first bit in the least significant bit of the first byte."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def unpack_bits(data: bytes, count: int) -> tuple[bool, ...]:
    """The first ``count`` bits of ``data`` (the inverse of :func:`pack_bits`)."""
    if count > 8 * len(data):
        raise ServomexValidationError(f"{len(data)} bytes cannot hold {count} bits")
    return tuple(bool(data[i // 8] >> (i % 8) & 1) for i in range(count))


@dataclass(frozen=True, slots=True)
class ModbusRequest:
    """A decoded request PDU.

    ``address`` is the PDU start address (FC01–06, FC15, FC16); ``count`` the number of
    bits or registers; ``value`` the raw 16-bit value of FC05/FC06 (FC05: 0xFF00 on,
    0x0000 off); ``sub_function`` and ``data`` the FC08 fields; ``data`` also carries the
    packed values of FC15/FC16 and the raw payload of a function this module cannot parse.
    """

    function: int
    address: int = 0
    count: int = 0
    value: int | None = None
    sub_function: int | None = None
    data: bytes = b""

    @property
    def coil_values(self) -> tuple[bool, ...]:
        """The coil states written: FC15's bits, or FC05's single value (on = 0xFF00)."""
        if self.function == FunctionCode.WRITE_SINGLE_COIL:
            return (self.value == COIL_ON,)
        if self.function == FunctionCode.WRITE_MULTIPLE_COILS:
            return unpack_bits(self.data, self.count)
        return ()

    def encode(self) -> bytes:
        """The request PDU (function code and payload), inverse of :func:`parse_request`."""
        fc = self.function
        if fc in (0x01, 0x02, 0x03, 0x04):
            return bytes([fc]) + self.address.to_bytes(2, "big") + self.count.to_bytes(2, "big")
        if fc in (0x05, 0x06):
            value = 0 if self.value is None else self.value
            return bytes([fc]) + self.address.to_bytes(2, "big") + value.to_bytes(2, "big")
        if fc == FunctionCode.DIAGNOSTICS:
            sub = 0 if self.sub_function is None else self.sub_function
            return bytes([fc]) + sub.to_bytes(2, "big") + self.data
        if fc in (0x0F, 0x10):
            return (
                bytes([fc])
                + self.address.to_bytes(2, "big")
                + self.count.to_bytes(2, "big")
                + bytes([len(self.data)])
                + self.data
            )
        return bytes([fc]) + self.data

    @classmethod
    def read(cls, function: int, address: int, count: int) -> ModbusRequest:
        """A read request (FC01, FC02, FC03 or FC04)."""
        return cls(function=function, address=address, count=count)

    @classmethod
    def write_coil(cls, address: int, on: bool) -> ModbusRequest:
        """An FC05 write of one coil."""
        return cls(FunctionCode.WRITE_SINGLE_COIL, address, 1, COIL_ON if on else COIL_OFF)

    @classmethod
    def write_coils(cls, address: int, values: Sequence[bool]) -> ModbusRequest:
        """An FC15 write of several coils."""
        return cls(FunctionCode.WRITE_MULTIPLE_COILS, address, len(values), data=pack_bits(values))

    @classmethod
    def loopback(cls, data: bytes = b"\x00\x00") -> ModbusRequest:
        """An FC08 sub-function 0 (return query data) request."""
        return cls(FunctionCode.DIAGNOSTICS, sub_function=0, data=bytes(data))


def _frame_error(message: str, pdu: bytes) -> ServomexFrameError:
    function = pdu[0] if pdu else None
    return ServomexFrameError(message, context=ErrorContext(function_code=function, request=pdu))


def parse_request(pdu: bytes) -> ModbusRequest:
    """Decode a request PDU (function code first, no address or checksum).

    FC01–04 and FC05/06 must be exactly 5 bytes; FC08 at least 3 (sub-function + data);
    FC15/16 must carry a byte count that matches their data and their quantity. A function
    code with no known layout decodes to ``ModbusRequest(function, data=payload)`` so the
    caller can answer exception 01. A malformed PDU raises ``ServomexFrameError``.
    """
    pdu = bytes(pdu)
    if not pdu:
        raise _frame_error("empty PDU", pdu)
    fc, body = pdu[0], pdu[1:]
    if fc in (0x01, 0x02, 0x03, 0x04, 0x05, 0x06):
        if len(body) != 4:
            raise _frame_error(f"FC{fc:02d} request needs 4 data bytes, got {len(body)}", pdu)
        first = int.from_bytes(body[:2], "big")
        second = int.from_bytes(body[2:], "big")
        if fc in (0x05, 0x06):
            return ModbusRequest(fc, address=first, count=1, value=second)
        return ModbusRequest(fc, address=first, count=second)
    if fc == FunctionCode.DIAGNOSTICS:
        if len(body) < 2:
            raise _frame_error("FC08 request needs a sub-function", pdu)
        return ModbusRequest(fc, sub_function=int.from_bytes(body[:2], "big"), data=body[2:])
    if fc in (0x0F, 0x10):
        if len(body) < 5:
            raise _frame_error(f"FC{fc:02d} request too short ({len(body)} data bytes)", pdu)
        address = int.from_bytes(body[:2], "big")
        count = int.from_bytes(body[2:4], "big")
        byte_count, data = body[4], body[5:]
        expected = (count + 7) // 8 if fc == 0x0F else 2 * count
        if byte_count != len(data) or byte_count != expected:
            raise _frame_error(
                f"FC{fc:02d} byte count {byte_count} does not match "
                f"{len(data)} data bytes for quantity {count}",
                pdu,
            )
        return ModbusRequest(fc, address=address, count=count, data=data)
    return ModbusRequest(fc, data=body)


def build_read_bits_response(function: int, bits: Sequence[bool]) -> bytes:
    """FC01/FC02 response PDU: function, byte count, bits packed LSB first."""
    packed = pack_bits(bits)
    return bytes([function, len(packed)]) + packed


def build_read_registers_response(function: int, registers: Sequence[int]) -> bytes:
    """FC03/FC04 response PDU: function, byte count, big-endian registers."""
    body = b"".join(int(r).to_bytes(2, "big") for r in registers)
    return bytes([function, len(body)]) + body


def build_write_coil_response(address: int, value: int) -> bytes:
    """FC05 response PDU: an echo of the request."""
    return (
        bytes([FunctionCode.WRITE_SINGLE_COIL])
        + address.to_bytes(2, "big")
        + value.to_bytes(2, "big")
    )


def build_write_coils_response(address: int, count: int) -> bytes:
    """FC15 response PDU: function, start address, quantity written."""
    return (
        bytes([FunctionCode.WRITE_MULTIPLE_COILS])
        + address.to_bytes(2, "big")
        + count.to_bytes(2, "big")
    )


def build_loopback_response(sub_function: int, data: bytes) -> bytes:
    """FC08 response PDU: an echo of sub-function and data."""
    return bytes([FunctionCode.DIAGNOSTICS]) + sub_function.to_bytes(2, "big") + bytes(data)


def build_exception(function: int, code: int) -> bytes:
    """Exception response PDU: ``function | 0x80`` then the exception code."""
    return bytes([(function | 0x80) & 0xFF, code & 0xFF])
