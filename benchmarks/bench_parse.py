"""Continuous-frame parsing speed on the two real captures (12 frames).

Two references, both measured in the same run:

* the line rate: a 19200-baud 8-N-1 link carries 19200 / 10 / 206 ≈ 9.3 frames/s of the
  5-channel frame (206 bytes with CR LF), so ``× line rate`` is the headroom;
* a bare ``bytes.split(b";")`` of the same lines, the floor cost of touching the fields in
  Python at all, so ``× split`` is how much more the full decode costs.
"""

from __future__ import annotations

from pathlib import Path

from ophyd_servomex.codec import continuous
from ophyd_servomex.codec.continuous import ContinuousDecoder, parse_frame

from ._harness import Result, side_by_side

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
CAPTURES = ("continuous_4100_idle_5ch.bin", "continuous_4100_live_5ch.bin")
LINE_RATE = 19200 / 10 / 206
"""Frames per second a 19200-baud 8-N-1 link delivers (206-byte frames)."""


def run(quick: bool) -> list[Result]:
    """Frames/s of parse_frame and ContinuousDecoder, as ratios to the line rate and split."""
    data = b"".join((FIXTURES / name).read_bytes() for name in CAPTURES)
    lines = data.split(b"\n")[:-1]
    frames = len(lines)
    chunks = [data[i : i + 64] for i in range(0, len(data), 64)]
    decoder = ContinuousDecoder(clock=lambda: 0.0)
    blocks = continuous._BLOCK_CACHE
    caches = (blocks, continuous._LABEL_CACHE, continuous._FLAG_CACHE, continuous._STATUS_CACHE)

    def split() -> None:
        for line in lines:
            line.split(b";")

    def parse() -> None:
        for line in lines:
            parse_frame(line, timestamp=0.0)

    def parse_new_values() -> None:
        for line in lines:
            blocks.clear()
            parse_frame(line, timestamp=0.0)

    def parse_uncached() -> None:
        for line in lines:
            for cache in caches:
                cache.clear()
            parse_frame(line, timestamp=0.0)

    def decode_whole() -> None:
        decoder.feed(data)

    def decode_chunked() -> None:
        for chunk in chunks:
            decoder.feed(chunk)

    assert len(decoder.feed(data)) == frames, "the captures no longer decode"
    t = side_by_side(
        {
            "split": split,
            "parse": parse,
            "new values": parse_new_values,
            "uncached": parse_uncached,
            "whole": decode_whole,
            "chunked": decode_chunked,
        },
        quick=quick,
    )
    assert decoder.errors == 0
    assert decoder.pending == 0

    def rate(name: str) -> float:
        return frames / t[name]

    floor = "cost of a bare bytes.split(b';') of the same lines"
    line = f"a 19200-baud link delivers {LINE_RATE:.2f} frames/s"
    return [
        Result("parse_frame", rate("parse"), "frames/s", "12 captured frames, warm caches"),
        Result("parse_frame ÷ line rate", rate("parse") / LINE_RATE, "×", line),
        Result("parse_frame cost ÷ split", t["parse"] / t["split"], "× split", floor),
        Result(
            "parse_frame, new values ÷ split",
            t["new values"] / t["split"],
            "× split",
            "every value new (block cache emptied per frame)",
        ),
        Result(
            "parse_frame, no caches ÷ split",
            t["uncached"] / t["split"],
            "× split",
            "every cache emptied per frame (worst case)",
        ),
        Result("ContinuousDecoder", rate("whole"), "frames/s", "both captures in one feed()"),
        Result("ContinuousDecoder ÷ line rate", rate("whole") / LINE_RATE, "×", line),
        Result("ContinuousDecoder cost ÷ split", t["whole"] / t["split"], "× split", floor),
        Result(
            "ContinuousDecoder, 64-byte chunks ÷ split",
            t["chunked"] / t["split"],
            "× split",
            f"{len(chunks)} feed() calls for 12 frames",
        ),
    ]
