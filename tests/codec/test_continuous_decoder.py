"""ContinuousDecoder: splitting arbitrary chunks into frames, fragments and typed errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ophyd_servomex.codec.continuous import (
    MAX_LINE_LENGTH,
    ContinuousDecoder,
    parse_frame,
)
from ophyd_servomex.codec.errors import (
    ServomexChecksumError,
    ServomexFrameError,
    ServomexProtocolError,
)
from ophyd_servomex.codec.models import Frame

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CAPTURES = b"".join(
    (FIXTURES / name).read_bytes()
    for name in ("continuous_4100_idle_5ch.bin", "continuous_4100_live_5ch.bin")
)
LINES = CAPTURES.split(b"\n")[:-1]
EXPECTED = [parse_frame(line, timestamp=0.0) for line in LINES]


class Ticks:
    """A fake clock: 1.0, 2.0, … one tick per call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return float(self.calls)


def frames_of(items: list[Frame | ServomexProtocolError]) -> list[Frame]:
    return [item for item in items if isinstance(item, Frame)]


def errors_of(items: list[Frame | ServomexProtocolError]) -> list[ServomexProtocolError]:
    return [item for item in items if not isinstance(item, Frame)]


def feed_in(
    decoder: ContinuousDecoder, data: bytes, sizes: list[int]
) -> list[Frame | ServomexProtocolError]:
    out: list[Frame | ServomexProtocolError] = []
    at = 0
    for size in itertools.cycle(sizes):
        if at >= len(data):
            break
        out += decoder.feed(data[at : at + size])
        at += size
    return out


def test_both_captures_in_one_chunk() -> None:
    decoder = ContinuousDecoder(clock=lambda: 7.0)
    out = decoder.feed(CAPTURES)
    assert out == [
        Frame(f.readings, f.analyser, 7.0, f.protocol, f.address, f.raw) for f in EXPECTED
    ]
    assert [f.raw for f in frames_of(out)] == LINES
    assert (decoder.frames, decoder.errors, decoder.fragments, decoder.pending) == (12, 0, 0, 0)


def test_one_byte_at_a_time() -> None:
    ticks = Ticks()
    decoder = ContinuousDecoder(clock=ticks)
    out = feed_in(decoder, CAPTURES, [1])
    assert [f.raw for f in frames_of(out)] == LINES
    assert [f.readings for f in frames_of(out)] == [f.readings for f in EXPECTED]
    # the clock is read once per feed that completes a line, and stamps that line's frame
    assert ticks.calls == 12
    assert [f.timestamp for f in frames_of(out)] == [float(i) for i in range(1, 13)]
    assert (decoder.frames, decoder.errors, decoder.fragments) == (12, 0, 0)


def test_frames_completed_by_one_feed_share_its_timestamp() -> None:
    ticks = Ticks()
    decoder = ContinuousDecoder(clock=ticks)
    assert decoder.feed(CAPTURES[:100]) == []
    out = decoder.feed(CAPTURES[100:])
    assert {f.timestamp for f in frames_of(out)} == {1.0}
    assert ticks.calls == 1


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, len(CAPTURES)), max_size=40))
def test_any_chunking_yields_the_twelve_frames(cuts: list[int]) -> None:
    decoder = ContinuousDecoder(clock=lambda: 0.0)
    bounds = [0, *sorted(cuts), len(CAPTURES)]
    out: list[Frame | ServomexProtocolError] = []
    for start, stop in itertools.pairwise(bounds):
        out += decoder.feed(CAPTURES[start:stop])
    assert out == EXPECTED
    assert (decoder.frames, decoder.errors, decoder.fragments, decoder.pending) == (12, 0, 0, 0)


def test_crlf_lines_and_empty_lines() -> None:
    data = b"\n\r\n" + b"".join(line + b"\r\n\r\n" for line in LINES)
    decoder = ContinuousDecoder(clock=lambda: 0.0)
    out = feed_in(decoder, data, [7, 64, 1, 300])
    assert out == EXPECTED
    assert [f.raw for f in frames_of(out)] == LINES  # the CR is not part of the frame


@pytest.mark.parametrize("cut", [1, 50, 140, 203])
def test_joining_mid_frame_skips_one_fragment(cut: int) -> None:
    assert CAPTURES[cut] != 0x20
    decoder = ContinuousDecoder(clock=lambda: 0.0)
    out = feed_in(decoder, CAPTURES[cut:], [13])
    assert out == EXPECTED[1:]
    assert (decoder.frames, decoder.errors, decoder.fragments) == (11, 0, 1)


@pytest.mark.parametrize("offset", [i for i in range(1, 204) if CAPTURES[i] == 0x20])
def test_a_fragment_that_starts_with_a_space_is_still_a_fragment(offset: int) -> None:
    # joined at a space inside a frame: the tail has no whole frame's length, so it is the
    # join fragment, not a dropped frame
    decoder = ContinuousDecoder(clock=lambda: 0.0)
    out = decoder.feed(CAPTURES[offset:])
    assert errors_of(out) == []
    assert frames_of(out) == EXPECTED[1:]
    assert (decoder.frames, decoder.errors, decoder.fragments) == (11, 0, 1)


def test_a_whole_but_corrupt_first_frame_is_reported_not_taken_for_a_fragment() -> None:
    corrupt = LINES[0][:-5] + b"FFFF;"  # right length, wrong checksum
    decoder = ContinuousDecoder(clock=lambda: 0.0)
    out = decoder.feed(corrupt + b"\n" + LINES[1] + b"\n")
    (error,) = errors_of(out)
    assert isinstance(error, ServomexChecksumError)
    assert frames_of(out) == EXPECTED[1:2]
    assert (decoder.frames, decoder.errors, decoder.fragments) == (1, 1, 0)


def test_only_the_first_line_can_be_a_fragment() -> None:
    decoder = ContinuousDecoder(clock=lambda: 0.0)
    out = decoder.feed(b"tail of something\n" + LINES[0] + b"\nnot a frame\r\n" + LINES[1] + b"\n")
    assert frames_of(out) == EXPECTED[:2]
    (error,) = errors_of(out)
    assert isinstance(error, ServomexFrameError)
    assert error.context.response == b"not a frame"
    assert (decoder.frames, decoder.errors, decoder.fragments) == (2, 1, 1)


def test_garbage_between_frames_is_reported_and_resynchronised() -> None:
    corrupt = LINES[1][:20] + b"X" + LINES[1][21:]
    garbage = [b"\xff\x00\x7f junk", b" short", corrupt, b";" * 300]
    data = LINES[0] + b"\n"
    for junk, line in zip(garbage, LINES[2:6], strict=True):
        data += junk + b"\r\n" + line + b"\n"
    decoder = ContinuousDecoder(clock=lambda: 0.0)
    out = feed_in(decoder, data, [1, 2, 3, 5, 8, 13, 21, 34, 55])
    assert frames_of(out) == [EXPECTED[0], *EXPECTED[2:6]]
    errors = errors_of(out)
    assert [e.context.response for e in errors] == garbage
    assert [type(e) for e in errors] == [
        ServomexFrameError,
        ServomexFrameError,
        ServomexChecksumError,
        ServomexFrameError,
    ]
    assert all(e.context.protocol == "continuous" for e in errors)
    assert out[1] is errors[0]  # errors come back in stream order
    assert (decoder.frames, decoder.errors, decoder.fragments) == (5, 4, 0)


def test_overlong_line_is_dropped_and_memory_stays_bounded() -> None:
    decoder = ContinuousDecoder(clock=lambda: 0.0)
    assert decoder.feed(LINES[0] + b"\n") == EXPECTED[:1]
    junk = bytes(range(14, 256)) * 40  # no LF or CR (both end a line), 9680 bytes
    out = feed_in(decoder, junk, [97])
    (error,) = out
    assert isinstance(error, ServomexFrameError)
    assert "no line end within 433 bytes" in error.message
    assert MAX_LINE_LENGTH < len(error.context.response or b"") <= MAX_LINE_LENGTH + 97
    assert decoder.pending == 0
    # the rest of the overlong line is skipped silently; the next line decodes
    assert decoder.feed(b"more junk\n" + LINES[1] + b"\n") == EXPECTED[1:2]
    assert (decoder.frames, decoder.errors, decoder.fragments) == (2, 1, 0)


def test_overlong_line_in_one_big_chunk() -> None:
    decoder = ContinuousDecoder(clock=lambda: 0.0, max_line=300)
    out = decoder.feed(LINES[0] + b"\n" + b"x" * 5000)
    assert out[0] == EXPECTED[0]
    assert isinstance(out[1], ServomexFrameError)
    assert decoder.pending == 0
    assert decoder.feed(b"yyy\n" + LINES[1] + b"\n") == EXPECTED[1:2]


def test_flush_decodes_a_last_line_without_lf() -> None:
    decoder = ContinuousDecoder(clock=lambda: 3.0)
    assert decoder.feed(LINES[0] + b"\n" + LINES[1]) == [
        Frame(f.readings, f.analyser, 3.0, f.protocol, f.address, f.raw) for f in EXPECTED[:1]
    ]
    assert decoder.pending == len(LINES[1])
    assert frames_of(decoder.flush())[0].raw == LINES[1]
    assert decoder.flush() == []
    assert decoder.frames == 2


def test_reset_forgets_everything() -> None:
    decoder = ContinuousDecoder(clock=lambda: 0.0)
    decoder.feed(b"fragment\n" + LINES[0] + b"\nbad\n" + LINES[1][:50])
    assert (decoder.frames, decoder.errors, decoder.fragments, decoder.pending) == (1, 1, 1, 50)
    decoder.reset()
    assert (decoder.frames, decoder.errors, decoder.fragments, decoder.pending) == (0, 0, 0, 0)
    decoder.feed(b"fragment again\n")
    assert decoder.fragments == 1


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=600), max_size=12), mixed=st.booleans())
def test_decoder_never_raises(chunks: list[bytes], mixed: bool) -> None:
    decoder = ContinuousDecoder(clock=lambda: 0.0, max_line=MAX_LINE_LENGTH)
    total: list[Frame | ServomexProtocolError] = []
    for i, chunk in enumerate(chunks):
        data = chunk + (CAPTURES[i * 205 : (i + 1) * 205] if mixed else b"")
        out = decoder.feed(data)
        total += out
        assert decoder.pending <= MAX_LINE_LENGTH
    total += decoder.flush()
    assert all(isinstance(x, Frame | ServomexProtocolError) for x in total)
    errors = errors_of(total)
    assert all(isinstance(e.context.response, bytes) for e in errors)
    assert (decoder.frames, decoder.errors) == (len(total) - len(errors), len(errors))
