"""ByteReader: line and exact reads across arbitrary chunk boundaries, limits, cancellation."""

from __future__ import annotations

import itertools

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ophyd_servomex.codec.errors import ServomexFrameError
from ophyd_servomex.transport import ByteReader, LinkLostError, memory_transport_pair

pytestmark = pytest.mark.anyio


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[i:j] for i, j in itertools.pairwise(points) if data[i:j]]


@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\r\n", b"")), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=20),
)
@settings(max_examples=60, deadline=None)
def test_receive_until_finds_every_line_whatever_the_chunking(
    lines: list[bytes], cuts: list[int]
) -> None:
    lines = [line.rstrip(b"\r") for line in lines]
    wire = b"".join(line + b"\r\n" for line in lines)

    async def main() -> list[bytes]:
        a, b = memory_transport_pair()
        for chunk in _split(wire, cuts):
            await a.send(chunk)
        reader = ByteReader(b)
        return [await reader.receive_until(b"\r\n", 100) for _ in lines]

    assert anyio.run(main) == lines


@given(
    data=st.binary(min_size=1, max_size=200),
    sizes=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=10),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=20),
)
@settings(max_examples=60, deadline=None)
def test_receive_exactly_reassembles_the_stream(
    data: bytes, sizes: list[int], cuts: list[int]
) -> None:
    wanted: list[int] = []
    left = len(data)
    for size in sizes:
        take = min(size, left)
        wanted.append(take)
        left -= take

    async def main() -> list[bytes]:
        a, b = memory_transport_pair()
        for chunk in _split(data, cuts):
            await a.send(chunk)
        reader = ByteReader(b, chunk_size=7)
        return [await reader.receive_exactly(n) for n in wanted]

    pieces = anyio.run(main)
    assert [len(p) for p in pieces] == wanted
    assert b"".join(pieces) == data[: sum(wanted)]


async def test_receive_until_across_chunk_boundaries_exact_values() -> None:
    a, b = memory_transport_pair()
    reader = ByteReader(b, chunk_size=4)
    for chunk in (b":01040", b"000004", b"6\r", b"\n:02", b"\r\nrest"):
        await a.send(chunk)
    assert await reader.receive_until(b"\r\n", 64) == b":010400000046"
    assert await reader.receive_until(b"\r\n", 64, include_delimiter=True) == b":02\r\n"
    assert reader.buffered == b"re"  # chunk_size=4 read b"\r\nre" and no more
    assert await reader.receive_some() == b"re"
    assert await reader.receive_some() == b"st"


async def test_receive_exactly_across_chunk_boundaries_exact_values() -> None:
    a, b = memory_transport_pair()
    reader = ByteReader(b)
    await a.send(b"\x1e\x04")
    await a.send(b"\x8c")
    await a.send(b"\x41\xa3\x00\x00extra")
    assert await reader.receive_exactly(3) == b"\x1e\x04\x8c"
    assert await reader.receive_exactly(4) == b"\x41\xa3\x00\x00"
    assert await reader.receive_exactly(0) == b""
    assert await reader.receive_some(2) == b"ex"
    assert reader.clear() == b"tra"
    assert reader.buffered == b""


async def test_a_line_longer_than_max_bytes_is_a_frame_error_and_stays_buffered() -> None:
    a, b = memory_transport_pair(port="memory://long")
    reader = ByteReader(b)
    await a.send(b"0123456789\n")
    with pytest.raises(ServomexFrameError) as info:
        await reader.receive_until(b"\n", 5)
    assert info.value.context.port == "memory://long"
    assert reader.buffered == b"0123456789\n"
    assert await reader.receive_until(b"\n", 10) == b"0123456789"


async def test_max_bytes_is_the_longest_accepted_record() -> None:
    a, b = memory_transport_pair()
    reader = ByteReader(b)
    await a.send(b"12345\n")
    assert await reader.receive_until(b"\n", 5) == b"12345"
    await a.send(b"123456")  # 6 bytes and no delimiter yet: already too long for 5
    with pytest.raises(ServomexFrameError):
        await reader.receive_until(b"\n", 5)


async def test_a_cancelled_read_loses_no_bytes() -> None:
    a, b = memory_transport_pair()
    reader = ByteReader(b)
    await a.send(b"partial ")
    with anyio.move_on_after(0.05) as scope:
        await reader.receive_until(b"\n", 100)
    assert scope.cancelled_caught
    assert reader.buffered == b"partial "
    await a.send(b"line\n")
    assert await reader.receive_until(b"\n", 100) == b"partial line"


async def test_unreceive_puts_bytes_back_in_front() -> None:
    a, b = memory_transport_pair()
    reader = ByteReader(b)
    await a.send(b"world\n")
    first = await reader.receive_exactly(2)
    reader.unreceive(b"hello " + first)
    assert await reader.receive_until(b"\n", 100) == b"hello world"


async def test_reset_input_buffer_clears_the_reader_and_the_transport() -> None:
    a, b = memory_transport_pair()
    reader = ByteReader(b)
    await a.send(b"old\nolder")
    assert await reader.receive_until(b"\n", 10) == b"old"
    await a.send(b"still old")
    await reader.reset_input_buffer()
    assert reader.buffered == b""
    await a.send(b"new\n")
    assert await reader.receive_until(b"\n", 10) == b"new"


async def test_a_lost_link_passes_through() -> None:
    a, b = memory_transport_pair()
    reader = ByteReader(b)
    await a.send(b"half a li")
    await a.aclose()
    with pytest.raises(LinkLostError):
        await reader.receive_until(b"\n", 100)
    assert reader.buffered == b"half a li"


async def test_bad_arguments() -> None:
    _, b = memory_transport_pair()
    reader = ByteReader(b)
    with pytest.raises(ValueError, match="delimiter"):
        await reader.receive_until(b"", 10)
    with pytest.raises(ValueError, match="negative"):
        await reader.receive_exactly(-1)
    with pytest.raises(ValueError, match="positive"):
        await reader.receive_some(0)
    with pytest.raises(ValueError, match="positive"):
        ByteReader(b, chunk_size=0)
