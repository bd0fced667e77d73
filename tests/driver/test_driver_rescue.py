"""rescue_frame: a whole frame at the end of a bad line is recovered, never invented."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ophyd_servomex.codec.continuous import parse_frame
from ophyd_servomex.driver.continuous import rescue_frame

CAPTURE = (Path(__file__).parent.parent / "fixtures" / "continuous_4100_live_5ch.bin").read_bytes()
LINES = CAPTURE.splitlines()


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.binary(min_size=1, max_size=300).filter(lambda b: b"\n" not in b),
    index=st.integers(0, len(LINES) - 1),
    crlf=st.booleans(),
)
def test_a_frame_behind_any_junk_is_recovered(prefix: bytes, index: int, crlf: bool) -> None:
    line = LINES[index]
    rescued = rescue_frame(prefix + line + (b"\r" if crlf else b""), timestamp=1.0)
    assert rescued is not None
    assert rescued.readings == parse_frame(line).readings
    assert rescued.raw == line
    assert rescued.timestamp == 1.0


@settings(max_examples=300, deadline=None)
@given(junk=st.binary(max_size=600))
def test_junk_alone_rescues_nothing_and_never_raises(junk: bytes) -> None:
    assert rescue_frame(junk, timestamp=0.0) is None


def test_a_truncated_frame_followed_by_a_whole_one() -> None:
    first, second = LINES[0], LINES[1]
    rescued = rescue_frame(first[:100] + second, timestamp=0.0)
    assert rescued is not None
    assert rescued.raw == second
    assert rescue_frame(first[:100], timestamp=0.0) is None
