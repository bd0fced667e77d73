"""100 000 fuzzed continuous lines and 100 000 fuzzed Modbus ADUs through every decoder:
nothing but a frame or a typed ``ServomexError`` ever comes out.

The fuzz is seeded (``random.Random``), so a failure names a reproducible case. It starts
from real bytes — the two bench captures, frames built for 1 to 10 channels, and the
simulator's real Modbus requests and replies — and mutates them: bit flips, byte
replacements, insertions, deletions, truncations, duplicated spans, splices of two frames,
random junk, and (so that the damage gets past the checksum into the field decoders)
mutations whose checksum, CRC or LRC is recomputed afterwards.

Besides "no untyped exception", each decoder's answer is checked for what it must be:

* ``parse_frame``: a frame it accepts has the length ``39 + 33·N`` and a checksum that
  matches, and carries the line as ``raw``;
* ``ContinuousDecoder``: line by line it agrees with ``parse_frame`` (the first line may be
  a fragment), its counters add up, and feeding the same bytes in random chunks gives the
  same answers as one chunk, line ends (LF, CR LF, a lone CR) inside the fuzz included;
* the driver's ``rescue_frame`` returns a frame cut from the end of the line, or nothing;
* ``decode_rtu`` / ``decode_ascii``: an ADU they accept re-encodes to the same bytes;
  the register-bank decoders turn any answer into a frame or a typed error.
"""

from __future__ import annotations

import contextlib
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ophyd_servomex.codec.continuous import (
    MAX_LINE_LENGTH,
    ContinuousDecoder,
    build_frame,
    checksum,
    frame_length,
    parse_frame,
)
from ophyd_servomex.codec.errors import (
    ServomexChecksumError,
    ServomexError,
    ServomexFrameError,
    ServomexParseError,
    ServomexProtocolError,
)
from ophyd_servomex.codec.modbus_frames import (
    decode_ascii,
    decode_rtu,
    encode_ascii,
    encode_rtu,
    lrc,
    parse_request,
)
from ophyd_servomex.codec.models import ChannelId, Frame, ProtocolKind, Unit
from ophyd_servomex.codec.registers import (
    ANALYSER_DISCRETE_COUNT,
    CHANNEL_DISCRETE_COUNT,
    FULL_SWEEP,
    INPUT_REGISTER_COUNT,
    ReadRequest,
    RegisterBanks,
    banks_from_responses,
    decode_banks,
)
from ophyd_servomex.driver.continuous import rescue_frame
from ophyd_servomex.sim import SimAnalyser, answer, bench_channels

SEED = 20260530
FRAMES = 100_000
ADUS = 100_000
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CAPTURES = ("continuous_4100_idle_5ch.bin", "continuous_4100_live_5ch.bin")
PRINTABLE = bytes(range(0x20, 0x7F))


# --- seeds: real bytes ---------------------------------------------------------------------


def capture_lines() -> list[bytes]:
    """The twelve frames of the two bench captures (LF-only, as committed)."""
    data = b"".join((FIXTURES / name).read_bytes() for name in CAPTURES)
    return data.split(b"\n")[:-1]


def built_lines() -> list[bytes]:
    """Frames for 1 to 10 channels, built from a captured frame (CR LF stripped)."""
    base = parse_frame(capture_lines()[0], timestamp=0.0)
    template = base.readings[0]
    readings = [
        replace(template, channel=cid, value=round(1.5 * i, 3), name=f"Gas{i}")
        if cid.kind.value != "external"
        else replace(template, channel=cid, value=4.0 + i, name=None, unit=Unit.MILLIAMP)
        for i, cid in enumerate(ChannelId)
    ]
    return [
        build_frame(replace(base, readings=tuple(readings[:n]))).rstrip(b"\r\n")
        for n in range(1, len(readings) + 1)
    ]


def continuous_seeds() -> list[bytes]:
    return capture_lines() + built_lines()


def modbus_seeds() -> list[tuple[int, bytes]]:
    """(address, PDU) of the real traffic: the sweep's requests and the replies to them."""
    analyser = SimAnalyser(bench_channels(noisy=False), address=30, seed=1)
    pdus: list[bytes] = []
    for request in FULL_SWEEP:
        pdu = bytes([request.function]) + struct.pack(">HH", request.start, request.count)
        pdus += [pdu, answer(analyser, pdu, now=0.0)]
    pdus += [bytes.fromhex("08 0000 ABCD"), bytes.fromhex("05 0000 FF00"), b"\x84\x02"]
    return [(30, pdu) for pdu in pdus] + [(1, pdus[1]), (247, pdus[3])]


# --- mutations --------------------------------------------------------------------------------

type Mutation = Callable[[random.Random, bytes, list[bytes]], bytes]


def flip_bit(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]


def replace_byte(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    new = rng.choice(PRINTABLE) if rng.random() < 0.7 else rng.randrange(256)
    return data[:i] + bytes([new]) + data[i + 1 :]


def insert_bytes(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    i = rng.randrange(len(data) + 1)
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return data[:i] + junk + data[i:]


def delete_span(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, 12) :]


def truncate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def duplicate_span(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.randint(1, 40))
    return data[:j] + data[i:j] + data[j:]


def splice(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    other = rng.choice(seeds)
    return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]


def junk(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    alphabet = PRINTABLE if rng.random() < 0.5 else bytes(range(256))
    return bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 420)))


def swap_fields(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """Two ``;``-separated fields change places (a same-sum damage the checksum misses)."""
    parts = data.split(b";")
    if len(parts) < 3:
        return data
    i, j = rng.sample(range(len(parts)), 2)
    parts[i], parts[j] = parts[j], parts[i]
    return b";".join(parts)


GENERIC: tuple[Mutation, ...] = (
    flip_bit,
    replace_byte,
    replace_byte,
    insert_bytes,
    delete_span,
    truncate,
    duplicate_span,
    splice,
)


def fix_checksum(line: bytes) -> bytes:
    """Recompute a continuous line's checksum where its count field says it should be."""
    count = line[31:33]
    if not count.isdigit() or not 1 <= int(count) <= 10:
        return line
    end = 34 + 33 * int(count)
    if len(line) < end + 5:
        return line
    return line[:end] + b"%04X" % checksum(line[1:end]) + line[end + 4 :]


def mutate_line(rng: random.Random, line: bytes, seeds: list[bytes]) -> bytes:
    """One fuzzed continuous line (no line end inside, at most MAX_LINE_LENGTH bytes)."""
    roll = rng.random()
    if roll < 0.05:
        out = junk(rng, line, seeds)
    elif roll < 0.15:
        out = swap_fields(rng, line, seeds)
    else:
        out = line
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            out = rng.choice(GENERIC)(rng, out, seeds)
        if roll < 0.55:
            out = fix_checksum(out)  # so the damage reaches the field decoders
    return out.replace(b"\n", b"\x0b").replace(b"\r", b"\x0b")[:MAX_LINE_LENGTH]


def fuzzed_lines(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    seeds = continuous_seeds()
    return [mutate_line(rng, rng.choice(seeds), seeds) for _ in range(count)]


# --- the continuous decoders ---------------------------------------------------------------------


def parse_outcome(line: bytes) -> Frame | ServomexError:
    """``parse_frame``'s answer; any exception that is not a ServomexError fails the test."""
    try:
        return parse_frame(line, timestamp=0.0)
    except ServomexError as exc:
        return exc


def check_accepted(line: bytes, frame: Frame) -> None:
    """What must hold of every line ``parse_frame`` accepts."""
    content = line.rstrip(b"\r\n")
    n = len(frame.readings)
    if len(content) != frame_length(n):  # spaces after the closing ';' are not the frame
        assert len(content.rstrip(b" ")) == frame_length(n)
        content = content[: frame_length(n)]
    assert int(content[31:33]) == n
    end = 34 + 33 * n
    assert int(content[end : end + 4], 16) == checksum(content[1:end])
    assert frame.raw == line
    assert frame.protocol is ProtocolKind.CONTINUOUS_ASCII
    assert len({r.channel for r in frame.readings}) == n


def same(a: Frame | ServomexError, b: Frame | ServomexError) -> bool:
    """Two answers agree: equal frames from the same line, or errors of one type and text."""
    if isinstance(a, Frame) and isinstance(b, Frame):
        return a.raw == b.raw and a.readings == b.readings and a.analyser == b.analyser
    return type(a) is type(b) and str(a) == str(b)


def chunks(rng: random.Random, data: bytes) -> Iterator[bytes]:
    i = 0
    while i < len(data):
        size = rng.choice((1, 2, 7, 64, 206, 512, 4096))
        yield data[i : i + size]
        i += size


def test_100k_fuzzed_lines_through_parse_frame_the_stream_decoder_and_the_rescue() -> None:
    lines = fuzzed_lines(FRAMES, SEED)
    outcomes = [parse_outcome(line) for line in lines]
    tally: dict[type, int] = {}
    for line, outcome in zip(lines, outcomes, strict=True):
        tally[type(outcome)] = tally.get(type(outcome), 0) + 1
        if isinstance(outcome, Frame):
            check_accepted(line, outcome)
        else:
            assert isinstance(outcome, ServomexProtocolError), repr(outcome)
    assert sum(tally.values()) == FRAMES
    # the fuzz reaches every verdict, deep ones included (the checksum-fixed mutations)
    for kind in (Frame, ServomexFrameError, ServomexChecksumError, ServomexParseError):
        assert tally.get(kind, 0) > FRAMES // 100, tally

    # the stream decoder agrees with parse_frame line by line, whatever the chunking
    stream = b"\n".join(lines) + b"\n"
    expected = expected_stream(lines, outcomes)
    whole = ContinuousDecoder(clock=lambda: 0.0)
    got = whole.feed(stream)
    assert len(got) == len(expected)
    assert all(same(g, e) for g, e in zip(got, expected, strict=True))
    assert whole.frames == sum(isinstance(g, Frame) for g in got)
    assert whole.errors == len(got) - whole.frames
    assert whole.pending == 0

    rng = random.Random(SEED + 1)
    chunked = ContinuousDecoder(clock=lambda: 0.0)
    pieces = [item for chunk in chunks(rng, stream) for item in chunked.feed(chunk)]
    assert len(pieces) == len(got)
    assert all(same(p, g) for p, g in zip(pieces, got, strict=True))
    assert (chunked.frames, chunked.errors, chunked.fragments) == (
        whole.frames,
        whole.errors,
        whole.fragments,
    )

    # the driver's rescue of a frame glued to the end of a bad line: a frame or nothing
    rescued = 0
    for line, outcome in zip(lines, outcomes, strict=True):
        if isinstance(outcome, Frame):
            continue
        frame = rescue_frame(line, 0.0)
        if frame is not None:
            rescued += 1
            assert frame.raw is not None
            assert line.endswith(frame.raw)
            check_accepted(frame.raw, frame)
    assert rescued > 0


def expected_stream(
    lines: list[bytes], outcomes: list[Frame | ServomexError]
) -> list[Frame | ServomexError]:
    """What a ContinuousDecoder must report for ``lines`` (no line end inside, none
    overlong): each non-empty line's parse_frame answer, except a first line without a whole
    frame's shape — a leading space and 39 + 33·N bytes (trailing spaces aside) for its N —
    which is a join fragment, skipped."""
    out: list[Frame | ServomexError] = []
    first = True
    for line, outcome in zip(lines, outcomes, strict=True):
        if not line:
            continue
        if first:
            first = False
            count = int(line[31:33]) if line[31:33].isdigit() else 0
            whole = 1 <= count <= 10 and len(line.rstrip(b" ")) == 39 + 33 * count
            if line[:1] != b" " or not whole:
                continue
        out.append(outcome)
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 2000), max_size=40),
    st.integers(0, 10_000),
)
def test_any_chunking_of_a_fuzzed_stream_with_raw_line_ends_gives_the_same_answers(
    cuts: list[int], seed: int
) -> None:
    """Raw LFs and CRs inside the fuzz too: one chunk or many, the answers are the same."""
    rng = random.Random(seed)
    seeds = continuous_seeds()
    lines = [
        rng.choice(GENERIC)(rng, rng.choice(seeds), seeds)[:MAX_LINE_LENGTH] for _ in range(12)
    ]
    stream = b"\r\n".join(lines) + rng.choice((b"", b"\n", b"\r\n"))
    whole = ContinuousDecoder(clock=lambda: 0.0)
    expected = whole.feed(stream) + whole.flush()
    pieced = ContinuousDecoder(clock=lambda: 0.0)
    got: list[Frame | ServomexProtocolError] = []
    start = 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts):
        got += pieced.feed(stream[start:cut])
        start = cut
    got += pieced.feed(stream[start:]) + pieced.flush()
    assert all(isinstance(item, (Frame, ServomexProtocolError)) for item in got)
    assert len(got) == len(expected)
    assert all(same(a, b) for a, b in zip(got, expected, strict=True))


# --- Modbus ---------------------------------------------------------------------------------------


def mutate_adu(rng: random.Random, adu: bytes, seeds: list[bytes], ascii_framing: bool) -> bytes:
    out = adu
    for _ in range(rng.choice((1, 1, 2))):
        out = rng.choice(GENERIC)(rng, out, seeds)
    if rng.random() < 0.4:
        out = fix_adu_check(out, ascii_framing)
    return out


def fix_adu_check(adu: bytes, ascii_framing: bool) -> bytes:
    """Recompute a damaged ADU's CRC (RTU) or LRC (ASCII), so the damage reaches the PDU."""
    if not ascii_framing:
        return adu if len(adu) < 3 else encode_crc(adu[:-2])
    text = adu.rstrip(b"\r\n")
    try:
        body = bytes.fromhex(text[1:-2].decode("ascii"))
    except ValueError:
        return adu
    return text[:-2] + b"%02X" % lrc(body) + b"\r\n"


def encode_crc(body: bytes) -> bytes:
    from ophyd_servomex.codec.modbus_frames import crc16

    return body + crc16(body).to_bytes(2, "little")


def decode_pdu_further(pdu: bytes) -> None:
    """Push an accepted PDU through the next decoders: the request parser (the simulator's
    side) and, for a read reply, the register banks and the frame."""
    with contextlib.suppress(ServomexError):
        parse_request(pdu)
    if len(pdu) < 2 or pdu[0] not in (2, 4):
        return
    payload = pdu[2 : 2 + pdu[1]]
    if pdu[0] == 4:
        regs = struct.unpack(f">{len(payload) // 2}H", payload[: len(payload) // 2 * 2])
        request = ReadRequest(4, 0, max(1, min(len(regs), INPUT_REGISTER_COUNT)))
        answers: dict[ReadRequest, tuple[int, ...] | tuple[bool, ...]] = {request: regs}
    else:
        bits = tuple(bool(b >> i & 1) for b in payload for i in range(8))
        count = max(1, min(len(bits), CHANNEL_DISCRETE_COUNT))
        answers = {ReadRequest(2, 0, count): bits}
    try:
        banks = banks_from_responses(answers)
    except ServomexError:
        return
    frame = decode_banks(banks, timestamp=0.0, protocol=ProtocolKind.MODBUS_RTU, address=30)
    assert {ChannelId.E1, ChannelId.E2} <= set(frame.channels)


def decode_adu(adu: bytes, ascii_framing: bool) -> tuple[int, bytes] | ServomexError:
    """The decoder's answer; any exception that is not a ServomexError fails the test."""
    try:
        return decode_ascii(adu) if ascii_framing else decode_rtu(adu)
    except ServomexError as exc:
        return exc


def test_100k_fuzzed_modbus_adus_through_decode_rtu_decode_ascii_and_the_banks() -> None:
    rng = random.Random(SEED + 2)
    seeds = modbus_seeds()
    rtu = [encode_rtu(a, p) for a, p in seeds]
    ascii_ = [encode_ascii(a, p) for a, p in seeds]
    tally = {"rtu ok": 0, "rtu error": 0, "ascii ok": 0, "ascii error": 0}
    for i in range(ADUS):
        ascii_framing = i % 2 == 1
        pool = ascii_ if ascii_framing else rtu
        adu = mutate_adu(rng, rng.choice(pool), pool, ascii_framing)
        kind = "ascii" if ascii_framing else "rtu"
        decoded = decode_adu(adu, ascii_framing)
        if isinstance(decoded, ServomexError):
            assert isinstance(decoded, (ServomexFrameError, ServomexChecksumError)), repr(decoded)
            tally[f"{kind} error"] += 1
            continue
        address, pdu = decoded
        tally[f"{kind} ok"] += 1
        # an accepted ADU is exactly its address and PDU, framed again
        if ascii_framing:
            digits = adu.removesuffix(b"\n").removesuffix(b"\r")[1:]
            body = bytes([address]) + pdu
            assert bytes.fromhex(digits.decode()) == body + bytes([lrc(body)])
        else:
            assert encode_crc(bytes([address]) + pdu) == adu
        decode_pdu_further(pdu)
    assert sum(tally.values()) == ADUS
    assert all(n > ADUS // 50 for n in tally.values()), tally


@pytest.mark.parametrize("seed", range(4))
def test_fuzzed_register_banks_decode_to_frames_or_typed_errors(seed: int) -> None:
    """Registers and bits of any value: a bank is built (or refused with a typed error) and
    every bank decodes to a frame of the slots it holds."""
    rng = random.Random(SEED + 10 + seed)
    decoded = refused = 0
    for _ in range(2_500):
        wild = rng.random() < 0.1
        regs = [
            rng.choice((-1, 0x10000, 2**20))
            if wild and rng.random() < 0.05
            else rng.randrange(0x10000)
            for _ in range(INPUT_REGISTER_COUNT)
        ]
        bits = [rng.random() < 0.3 for _ in range(CHANNEL_DISCRETE_COUNT)]
        flags = [rng.random() < 0.3 for _ in range(ANALYSER_DISCRETE_COUNT)]
        if wild and rng.random() < 0.3:
            bits[rng.randrange(len(bits))] = 2  # not a bit
        try:
            banks = RegisterBanks(tuple(regs), tuple(bits), tuple(flags))
        except ServomexError:
            refused += 1
            continue
        frame = decode_banks(banks, timestamp=0.0, protocol=ProtocolKind.MODBUS_ASCII)
        decoded += 1
        assert frame.channels == tuple(c for c in ChannelId if c in frame.channels)  # slot order
        assert {ChannelId.E1, ChannelId.E2} <= set(frame.channels)
        for reading in frame.readings:
            assert reading.value is None or reading.value == reading.value  # never NaN
    assert decoded > 0
    assert refused > 0
