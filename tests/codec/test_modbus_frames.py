"""Modbus ADU framing: CRC-16, LRC, RTU/ASCII encode/decode and the request/response PDUs."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU

from ophyd_servomex.codec.errors import (
    ServomexChecksumError,
    ServomexFrameError,
    ServomexValidationError,
)
from ophyd_servomex.codec.modbus_frames import (
    RTU_FALLBACK_REQUEST_LENGTH,
    ExceptionCode,
    FunctionCode,
    ModbusRequest,
    build_exception,
    build_loopback_response,
    build_read_bits_response,
    build_read_registers_response,
    build_write_coil_response,
    build_write_coils_response,
    crc16,
    decode_ascii,
    decode_rtu,
    encode_ascii,
    encode_rtu,
    lrc,
    pack_bits,
    parse_request,
    rtu_request_length,
    unpack_bits,
)

# docs/protocol.md §5.11: (request, RTU bytes, ASCII frame without CR LF, decoded request)
WORKED = [
    (
        "FC04 PDU 0 x70",
        "1E 04 00 00 00 46 73 97",
        ":1E040000004698",
        ModbusRequest(4, address=0, count=70),
    ),
    (
        "FC04 PDU 0 x7",
        "1E 04 00 00 00 07 B3 A7",
        ":1E0400000007D7",
        ModbusRequest(4, address=0, count=7),
    ),
    (
        "FC02 PDU 0 x80",
        "1E 02 00 00 00 50 7A 59",
        ":1E020000005090",
        ModbusRequest(2, address=0, count=80),
    ),
    (
        "FC02 PDU 1000 x16",
        "1E 02 03 E8 00 10 FB D9",
        ":1E0203E80010E5",
        ModbusRequest(2, address=1000, count=16),
    ),
    (
        "FC02 PDU 1008 x8",
        "1E 02 03 F0 00 08 7B D4",
        ":1E0203F00008E5",
        ModbusRequest(2, address=1008, count=8),
    ),
    (
        "FC08 loopback AB CD",
        "1E 08 00 00 AB CD 5C C1",
        ":1E080000ABCD62",
        ModbusRequest(8, sub_function=0, data=b"\xab\xcd"),
    ),
    (
        "FC05 coil 0 ON",
        "1E 05 00 00 FF 00 8E 55",
        ":1E050000FF00DE",
        ModbusRequest(5, address=0, count=1, value=0xFF00),
    ),
    (
        "FC01 coil 0 x1",
        "1E 01 00 00 00 01 FF A5",
        ":1E0100000001E0",
        ModbusRequest(1, address=0, count=1),
    ),
    (
        "FC05 coil 0 OFF",
        "1E 05 00 00 00 00 CF A5",
        ":1E0500000000DD",
        ModbusRequest(5, address=0, count=1, value=0x0000),
    ),
    (
        "FC05 coil 8 ON",
        "1E 05 00 08 FF 00 0F 97",
        ":1E050008FF00D6",
        ModbusRequest(5, address=8, count=1, value=0xFF00),
    ),
]
IDS = [w[0] for w in WORKED]


@pytest.mark.parametrize(("name", "rtu", "ascii_", "request_"), WORKED, ids=IDS)
def test_worked_requests_rtu(name: str, rtu: str, ascii_: str, request_: ModbusRequest) -> None:
    adu = bytes.fromhex(rtu)
    pdu = adu[1:-2]
    assert encode_rtu(30, pdu) == adu
    assert decode_rtu(adu) == (30, pdu)
    assert crc16(adu[:-2]) == int.from_bytes(adu[-2:], "little")
    assert crc16(adu) == 0  # a good frame's CRC over itself is zero
    assert rtu_request_length(adu) == 8
    assert parse_request(pdu) == request_
    assert request_.encode() == pdu


@pytest.mark.parametrize(("name", "rtu", "ascii_", "request_"), WORKED, ids=IDS)
def test_worked_requests_ascii(name: str, rtu: str, ascii_: str, request_: ModbusRequest) -> None:
    pdu = bytes.fromhex(rtu)[1:-2]
    line = ascii_.encode() + b"\r\n"
    assert encode_ascii(30, pdu) == line
    assert decode_ascii(line) == (30, pdu)
    assert decode_ascii(ascii_.encode()) == (30, pdu)
    assert decode_ascii(ascii_.encode() + b"\n") == (30, pdu)
    assert decode_ascii(ascii_.lower().encode()) == (30, pdu)
    assert lrc(bytes([30]) + pdu) == int(ascii_[-2:], 16)


def test_crc16_check_value_and_pymodbus_agree() -> None:
    assert crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS catalogue check value
    assert crc16(b"") == 0xFFFF
    for data in (b"\x1e\x04\x00\x00\x00\x46", bytes(range(256)), b"\x00" * 7):
        swapped = FramerRTU.compute_CRC(data)  # pymodbus gives the wire order as an int
        assert crc16(data) == int.from_bytes(swapped.to_bytes(2, "big"), "little")


def test_lrc_is_twos_complement_of_sum() -> None:
    assert lrc(b"") == 0
    assert lrc(b"\x01") == 0xFF
    assert lrc(bytes([0xFF, 0x01])) == 0
    assert lrc(bytes.fromhex("1E040000 0046".replace(" ", ""))) == 0x98


def test_decode_rtu_bad_crc_reports_both_values() -> None:
    adu = bytes.fromhex("1E 04 00 00 00 46 73 98")
    with pytest.raises(ServomexChecksumError) as info:
        decode_rtu(adu)
    assert info.value.expected == 0x9873
    assert info.value.actual == 0x9773
    assert info.value.raw == adu
    assert info.value.context.address == 30
    assert info.value.context.protocol == "modbus-rtu"


def test_decode_rtu_too_short() -> None:
    with pytest.raises(ServomexFrameError):
        decode_rtu(b"\x1e\x04\x00")


def test_decode_ascii_bad_lrc() -> None:
    with pytest.raises(ServomexChecksumError) as info:
        decode_ascii(b":1E040000004699\r\n")
    assert (info.value.expected, info.value.actual) == (0x99, 0x98)
    assert info.value.raw == b":1E040000004699\r\n"


@pytest.mark.parametrize(
    "line",
    [
        b"1E040000004698\r\n",  # no colon
        b":1E04000000469G\r\n",  # not hex
        b":1E04000000469\r\n",  # odd digit count
        b":1E98\r\n",  # too short
        b":\r\n",
        b"",
    ],
)
def test_decode_ascii_shape_errors(line: bytes) -> None:
    with pytest.raises(ServomexFrameError):
        decode_ascii(line)


def test_encode_validation() -> None:
    with pytest.raises(ServomexValidationError):
        encode_rtu(256, b"\x04")
    with pytest.raises(ServomexValidationError):
        encode_rtu(1, b"")
    with pytest.raises(ServomexValidationError):
        encode_ascii(1, bytes(254))


def test_rtu_request_length() -> None:
    assert rtu_request_length(b"") is None
    assert rtu_request_length(b"\x1e") is None
    for fc in (1, 2, 3, 4, 5, 6, 8):
        assert rtu_request_length(bytes([30, fc])) == 8
    # FC15: known once the byte count (offset 6) has arrived
    fc15 = encode_rtu(30, ModbusRequest.write_coils(0, [True] * 9).encode())
    assert len(fc15) == 11
    assert rtu_request_length(fc15[:6]) is None
    assert rtu_request_length(fc15[:7]) == 11
    assert rtu_request_length(fc15) == 11
    assert rtu_request_length(bytes([30, 0x11])) == 4  # report server id
    assert rtu_request_length(bytes([30, 0x63])) == RTU_FALLBACK_REQUEST_LENGTH
    assert rtu_request_length(bytes([30, 0x84])) == RTU_FALLBACK_REQUEST_LENGTH


def test_parse_fc15_and_fc16() -> None:
    request = parse_request(bytes.fromhex("0F 0000 0009 02 FF 01".replace(" ", "")))
    assert request == ModbusRequest(15, address=0, count=9, data=b"\xff\x01")
    assert request.coil_values == (True,) * 9
    fc16 = parse_request(bytes.fromhex("10 0000 0001 02 1234".replace(" ", "")))
    assert fc16 == ModbusRequest(16, address=0, count=1, data=b"\x12\x34")
    assert parse_request(ModbusRequest.write_coils(3, [True, False]).encode()) == ModbusRequest(
        15, address=3, count=2, data=b"\x01"
    )


def test_parse_unknown_function_keeps_payload() -> None:
    assert parse_request(b"\x2b\x0e\x01\x00") == ModbusRequest(0x2B, data=b"\x0e\x01\x00")
    assert ModbusRequest(0x2B, data=b"\x0e\x01\x00").encode() == b"\x2b\x0e\x01\x00"


@pytest.mark.parametrize(
    "pdu",
    [
        b"",
        b"\x04\x00\x00\x00",  # FC04 one byte short
        b"\x05\x00\x00\xff\x00\x00",  # FC05 one byte long
        b"\x08\x00",  # FC08 without a full sub-function
        b"\x0f\x00\x00\x00\x09\x02\xff",  # FC15 byte count 2, one data byte
        b"\x0f\x00\x00\x00\x09\x01\xff",  # FC15 byte count does not cover 9 coils
        b"\x0f\x00\x00",
    ],
)
def test_parse_malformed(pdu: bytes) -> None:
    with pytest.raises(ServomexFrameError):
        parse_request(pdu)


def test_request_constructors() -> None:
    assert ModbusRequest.write_coil(0, True).encode() == bytes.fromhex("050000FF00")
    assert ModbusRequest.write_coil(8, False).encode() == bytes.fromhex("0500080000")
    assert ModbusRequest.read(4, 0, 70).encode() == bytes.fromhex("0400000046")
    assert ModbusRequest.loopback(b"\xab\xcd").encode() == bytes.fromhex("080000ABCD")
    assert ModbusRequest.write_coil(0, True).coil_values == (True,)
    assert ModbusRequest.read(1, 0, 1).coil_values == ()


def test_response_builders() -> None:
    assert build_read_bits_response(2, [False] * 16) == b"\x02\x02\x00\x00"
    assert build_read_bits_response(
        1, [True, False, True, True, False, False, False, False, True]
    ) == bytes([1, 2, 0b00001101, 0b00000001])
    assert build_read_registers_response(4, [0x41A3, 0x0625]) == bytes.fromhex("040441A30625")
    assert build_write_coil_response(8, 0xFF00) == bytes.fromhex("050008FF00")
    assert build_write_coils_response(0, 9) == bytes.fromhex("0F00000009")
    assert build_loopback_response(0, b"\xab\xcd") == bytes.fromhex("080000ABCD")
    assert build_exception(FunctionCode.READ_HOLDING_REGISTERS, ExceptionCode.ILLEGAL_FUNCTION) == (
        b"\x83\x01"
    )
    assert build_exception(4, 2) == b"\x84\x02"
    # a full exception ADU at the bench address (CRC cross-checked with pymodbus)
    assert encode_rtu(30, build_exception(4, 2)) == bytes.fromhex("1E 84 02 F3 07")


def test_pack_unpack_bits() -> None:
    assert pack_bits([]) == b""
    assert pack_bits([True] + [False] * 7 + [True]) == b"\x01\x01"
    assert unpack_bits(b"\x05", 3) == (True, False, True)
    with pytest.raises(ServomexValidationError):
        unpack_bits(b"\x05", 9)


@given(st.integers(0, 247), st.binary(min_size=1, max_size=253))
def test_rtu_round_trip(address: int, pdu: bytes) -> None:
    adu = encode_rtu(address, pdu)
    assert decode_rtu(adu) == (address, pdu)


@given(st.integers(0, 247), st.binary(min_size=1, max_size=253))
def test_ascii_round_trip(address: int, pdu: bytes) -> None:
    line = encode_ascii(address, pdu)
    assert line.startswith(b":")
    assert line.endswith(b"\r\n")
    assert line[1:-2] == line[1:-2].upper()
    assert decode_ascii(line) == (address, pdu)


@given(st.binary(min_size=4, max_size=40), st.integers(0, 39), st.integers(1, 255))
def test_rtu_single_byte_corruption_is_detected(data: bytes, index: int, flip: int) -> None:
    adu = encode_rtu(data[0], data[1:])
    index %= len(adu)
    corrupted = bytearray(adu)
    corrupted[index] ^= flip
    with pytest.raises(ServomexChecksumError):
        decode_rtu(bytes(corrupted))


@given(st.binary(max_size=80))
def test_decoders_raise_only_servomex_errors(data: bytes) -> None:
    for decode in (decode_rtu, decode_ascii, parse_request):
        with contextlib.suppress(ServomexFrameError, ServomexChecksumError):
            decode(data)
    rtu_request_length(data)


@given(st.lists(st.booleans(), max_size=40))
def test_bits_round_trip(bits: list[bool]) -> None:
    assert unpack_bits(pack_bits(bits), len(bits)) == tuple(bits)
