"""The request dispatcher (exact reply PDUs) and the sans-I/O RTU/ASCII request splitters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from simhelpers import FakeClock

from ophyd_servomex.codec.modbus_frames import encode_ascii, encode_rtu
from ophyd_servomex.sim import (
    AsciiRequestSplitter,
    Received,
    RtuRequestSplitter,
    SimAnalyser,
    answer,
    bench_channels,
)


@pytest.fixture
def analyser(clock: FakeClock) -> SimAnalyser:
    return SimAnalyser(bench_channels(noisy=False), clock=clock)


@pytest.mark.parametrize(
    ("request_hex", "reply_hex"),
    [
        ("0400000002", "040441A30625"),  # I1 value
        ("0400450001", "04024100"),  # last register: E2 unit, "A" and its NUL
        ("0400000046", None),  # full map answered (checked below)
        ("0400460001", "8402"),  # one past the map
        ("0400000047", "8402"),
        ("0400000000", "8403"),  # quantity 0
        ("040000007E", "8403"),  # quantity above 125
        ("0200000050", "020A" + "00" * 10),
        ("02004F0001", "020100"),
        ("0200500001", "8202"),
        ("0203E80010", "02020000"),
        ("0203E70002", "8202"),  # straddles 999/1000
        ("0203F70002", "8202"),  # runs past 1015
        ("02004F03A0", "8202"),  # spans both blocks
        ("0200000000", "8203"),
        ("0100000009", "01020000"),
        ("010008000 2".replace(" ", ""), "8102"),
        ("0500090000", "8502"),  # coil 9 does not exist
        ("050000FF01", "8503"),  # not a coil value
        ("0F0000000A0200 00".replace(" ", ""), "8F02"),  # 10 coils
        ("0F0000000002", "8F03"),  # malformed: byte count without data
        ("080000ABCD", "080000ABCD"),
        ("080000", "080000"),  # loopback with no data
        ("080001 0000".replace(" ", ""), "8801"),  # sub-function 1 not supported
        ("0300000001", "8301"),
        ("0600000001", "8601"),
        ("10000000010200 01".replace(" ", ""), "9001"),
        ("11", "9101"),
        ("2B0E0100", "AB01"),
    ],
)
def test_reply_pdus(analyser: SimAnalyser, request_hex: str, reply_hex: str | None) -> None:
    reply = answer(analyser, bytes.fromhex(request_hex))
    if reply_hex is None:
        assert reply[:2] == b"\x04\x8c"
        assert len(reply) == 2 + 140
    else:
        assert reply == bytes.fromhex(reply_hex)
    assert analyser.coils == (False,) * 9


def test_coil_writes_echo(analyser: SimAnalyser) -> None:
    assert answer(analyser, bytes.fromhex("050000FF00")) == bytes.fromhex("050000FF00")
    assert analyser.coils[0]
    assert answer(analyser, bytes.fromhex("0100000001")) == bytes.fromhex("010101")
    assert answer(analyser, bytes.fromhex("0500000000")) == bytes.fromhex("0500000000")
    assert answer(analyser, bytes.fromhex("0F00070002 01 03".replace(" ", ""))) == bytes.fromhex(
        "0F00070002"
    )
    assert analyser.coils == (False,) * 7 + (True, True)


# --- splitters -----------------------------------------------------------------------------

REQ = bytes.fromhex("1E 04 00 00 00 46 73 97")
LOOP = bytes.fromhex("1E 08 00 00 AB CD 5C C1")


def feed_bytes(splitter: RtuRequestSplitter | AsciiRequestSplitter, data: bytes) -> list[Received]:
    out: list[Received] = []
    for i, byte in enumerate(data):
        out += splitter.feed(bytes([byte]), 1.0 + i * 0.0001)
    return out


def test_rtu_byte_by_byte_back_to_back() -> None:
    out = feed_bytes(RtuRequestSplitter(), REQ + LOOP)
    assert [(r.data, r.address, r.pdu) for r in out] == [
        (REQ, 30, REQ[1:-2]),
        (LOOP, 30, LOOP[1:-2]),
    ]
    assert out[0].started == 1.0
    assert out[0].ended == pytest.approx(1.0007)


def test_rtu_garbage_and_bad_crc_resync() -> None:
    bad = REQ[:-1] + b"\x00"
    splitter = RtuRequestSplitter()
    out = splitter.feed(b"\xff\x00\x13" + bad + LOOP, 1.0)
    assert [r.is_request for r in out] == [False, True]
    assert out[0].data == b"\xff\x00\x13" + bad
    assert out[0].reason
    assert out[1].data == LOOP
    assert splitter.pending == 0


def test_rtu_fc15_length_from_byte_count() -> None:
    fc15 = encode_rtu(30, bytes.fromhex("0F0000000902FF01"))
    splitter = RtuRequestSplitter()
    assert splitter.feed(fc15[:7], 1.0) == []
    out = splitter.feed(fc15[7:], 1.0)
    assert [r.data for r in out] == [fc15]


def test_rtu_silence_discards_a_fragment() -> None:
    splitter = RtuRequestSplitter(silence=0.02)
    assert splitter.feed(REQ[:5], 1.0) == []
    assert splitter.deadline() == pytest.approx(1.02)
    assert splitter.expire(1.01) == []
    out = splitter.expire(1.03)
    assert [(r.data, r.is_request) for r in out] == [(REQ[:5], False)]
    assert "silence" in out[0].reason
    # a fragment followed, after silence, by a full request: the request survives
    splitter.feed(b"\x1e\x0f\x00\x00\x00\x09\xf0", 2.0)  # claims 249 bytes
    out = splitter.feed(REQ, 2.5)
    assert [(r.data, r.is_request) for r in out] == [
        (b"\x1e\x0f\x00\x00\x00\x09\xf0", False),
        (REQ, True),
    ]


def test_rtu_request_found_after_a_long_claim_without_silence() -> None:
    splitter = RtuRequestSplitter(silence=10.0)
    out = splitter.feed(b"\x1e\x0f\x00\x00\x00\x09\xf0" + REQ, 1.0)
    assert [r.is_request for r in out] == [False, True]


def test_rtu_buffer_is_bounded() -> None:
    splitter = RtuRequestSplitter(silence=10.0)
    out = splitter.feed(b"\x01\x0f\x00\x00\x00\x09\xff" + bytes(2000), 1.0)
    assert splitter.pending <= 1024
    assert sum(len(r.data) for r in out) + splitter.pending == 2007


def test_ascii_splitting() -> None:
    line = encode_ascii(30, bytes.fromhex("0400000046"))
    assert line == b":1E040000004698\r\n"
    splitter = AsciiRequestSplitter()
    out = feed_bytes(splitter, b"junk" + line + b":1E04\r\n" + b":1E0400:1E080000ABCD62\r\n")
    assert [(r.data, r.is_request) for r in out] == [
        (b"junk", False),
        (line, True),
        (b":1E04\r\n", False),  # too short
        (b":1E0400", False),  # restarted by ':'
        (b":1E080000ABCD62\r\n", True),
    ]
    assert out[1].pdu == bytes.fromhex("0400000046")
    bad_lrc = splitter.feed(b":1E040000004699\r\n", 2.0)
    assert [(r.is_request, "LRC" in r.reason) for r in bad_lrc] == [(False, True)]


def test_ascii_silence_and_overlong() -> None:
    splitter = AsciiRequestSplitter(silence=1.0)
    splitter.feed(b":1E0400", 1.0)
    assert [r.data for r in splitter.expire(2.5)] == [b":1E0400"]
    out = splitter.feed(b":" + b"0" * 600, 3.0)
    assert [len(r.data) for r in out] == [601]
    assert splitter.pending == 0


# --- properties ----------------------------------------------------------------------------

REQUESTS = [
    bytes.fromhex(h)
    for h in ("0400000046", "0200000050", "0203E80010", "080000ABCD", "050000FF00", "0100000009")
]


@given(
    st.lists(st.sampled_from(REQUESTS), min_size=1, max_size=8),
    st.lists(st.integers(1, 12), min_size=1, max_size=30),
    st.sampled_from(["rtu", "ascii"]),
)
def test_any_chunking_yields_the_same_requests(
    pdus: list[bytes], cuts: list[int], framing: str
) -> None:
    encode = encode_rtu if framing == "rtu" else encode_ascii
    stream = b"".join(encode(30, pdu) for pdu in pdus)
    splitter = RtuRequestSplitter() if framing == "rtu" else AsciiRequestSplitter()
    out: list[Received] = []
    position, i = 0, 0
    while position < len(stream):
        size = cuts[i % len(cuts)]
        out += splitter.feed(stream[position : position + size], 1.0)
        position += size
        i += 1
    assert [r.pdu for r in out] == pdus
    assert splitter.pending == 0


@given(st.binary(max_size=300), st.sampled_from(["rtu", "ascii"]))
def test_splitters_never_raise(data: bytes, framing: str) -> None:
    splitter = RtuRequestSplitter() if framing == "rtu" else AsciiRequestSplitter()
    out = splitter.feed(data, 1.0) + splitter.expire(10.0)
    assert sum(len(r.data) for r in out) == len(data)  # every byte accounted for
    assert splitter.pending == 0


@given(st.binary(max_size=20))
def test_dispatch_answers_any_pdu(pdu: bytes) -> None:
    analyser = SimAnalyser(bench_channels(noisy=False), clock=FakeClock())
    reply = answer(analyser, pdu)
    if pdu:
        assert reply[0] & 0x7F == pdu[0] & 0x7F
    if reply[0] & 0x80:
        assert len(reply) == 2
        assert reply[1] in (1, 2, 3)
