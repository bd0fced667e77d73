"""Continuous frames unlike the two captures: every shape the spec allows must decode.

Each line is built by hand (fields, then the checksum over offset 1 … the ';' before it),
not with ``build_frame``, so the parser is checked against the grammar of docs/protocol.md §4
rather than against its own inverse.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ophyd_servomex.codec.continuous import ContinuousDecoder, checksum, parse_frame
from ophyd_servomex.codec.errors import (
    ServomexChecksumError,
    ServomexError,
    ServomexFrameError,
)
from ophyd_servomex.codec.models import CalPhase, ChannelId, Frame, Unit

ALL_IDS = ("I1", "I2", "I3", "I4", "D1", "D2", "D3", "D4", "E1", "E2")


def block(
    cid: str,
    *,
    name: bytes = b"Oxygen",
    value: bytes = b"20.376",
    unit: bytes = b" % ",
    alarms: bytes = b"    ",
    fm: bytes = b"  ",
    cal: bytes = b" ",
    warm: bytes = b" ",
) -> bytes:
    return b";".join((cid.encode(), name, value, unit, alarms, fm, cal, warm)) + b";"


def line(
    blocks: list[bytes],
    *,
    date: bytes = b"06-10-20",
    clock: bytes = b"02:54:18",
    afm: bytes = b"  ",
    autocal: bytes = b"S1S1S1S1",
    lower: bool = False,
) -> bytes:
    region = b";".join((date, clock, afm, autocal, b"%02d" % len(blocks))) + b";"
    region += b"".join(blocks)
    total = b"%04X" % checksum(region)
    return b" " + region + (total.lower() if lower else total) + b";"


@pytest.mark.parametrize("n", range(1, 11))
def test_every_channel_count_decodes_with_ids_in_wire_order(n: int) -> None:
    ids = ALL_IDS[:n]
    frame = parse_frame(line([block(c) for c in ids]) + b"\r\n", timestamp=1.0)
    assert [r.channel.value for r in frame.readings] == list(ids)
    assert len(frame.raw) == 39 + 33 * n + 2


def test_d_channels_anywhere_and_i4_present_are_found_by_id() -> None:
    ids = ("D2", "I4", "E1", "D1", "I1")
    frame = parse_frame(line([block(c, value=b"%6.3f" % i) for i, c in enumerate(ids)]))
    assert [r.channel.value for r in frame.readings] == list(ids)
    assert frame.channel(ChannelId.I4).value == 1.0
    assert frame.channel("D1").value == 3.0


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"-0.123", -0.123),
        (b"  -1.5", -1.5),
        (b"   100", 100.0),
        (b"20.376", 20.376),
        (b"++++++", None),
        (b"------", None),
        (b"******", None),
        (b"  OVER", None),
        (b"      ", None),
        (b"   nan", None),
        (b"  -inf", None),
        (b"1_0000", None),
    ],
)
def test_value_text(text: bytes, value: float | None) -> None:
    assert parse_frame(line([block("I1", value=text)])).channel("I1").value == value


def test_every_flag_and_alarm_digits() -> None:
    frame = parse_frame(
        line(
            [block("I1", alarms=b"1 3 ", fm=b"FM", cal=b"C", warm=b"W"), block("E1")],
            afm=b"FM",
        )
    )
    status = frame.channel("I1").status
    assert (status.fault, status.maintenance, status.calibrating, status.warming_up) == (
        True,
        True,
        True,
        True,
    )
    assert status.alarms == (True, False, True, False)
    assert not status.ok
    assert frame.channel("E1").status.ok
    assert (frame.analyser.fault, frame.analyser.maintenance) == (True, True)


def test_any_non_space_alarm_character_is_active() -> None:
    frame = parse_frame(line([block("I1", alarms=b"x*|4")]))
    assert frame.channel("I1").status.alarms == (True, True, True, True)


@pytest.mark.parametrize("date", [b"32-13-99", b"  -  -  ", b"00-00-00", b"ab-cd-ef"])
def test_a_bad_date_never_rejects_the_frame(date: bytes) -> None:
    frame = parse_frame(line([block("I1")], date=date))
    assert frame.analyser.clock is None
    assert frame.analyser.clock_text == date.decode() + " 02:54:18"
    assert frame.channel("I1").value == 20.376


def test_a_good_date_is_day_first() -> None:
    frame = parse_frame(line([block("I1")], date=b"31-12-25", clock=b"23:59:58"))
    assert frame.analyser.clock == datetime(2025, 12, 31, 23, 59, 58)


def test_unknown_autocal_characters_are_idle_with_no_gas() -> None:
    frame = parse_frame(line([block("I1")], autocal=b"XYC2S2??"))
    groups = frame.analyser.cal_groups
    assert [(g.group, g.phase, g.cal_gas) for g in groups] == [
        (1, CalPhase.IDLE, None),
        (2, CalPhase.CAL_GAS_2, 2),
        (3, CalPhase.IDLE, 2),
        (4, CalPhase.IDLE, None),
    ]


def test_lower_case_hex_checksum_is_accepted() -> None:
    assert parse_frame(line([block("I1"), block("I2")], lower=True)).channel("I2").value == 20.376


def test_unknown_unit_keeps_its_text() -> None:
    reading = parse_frame(line([block("I1", unit=b"ppb")])).channel("I1")
    assert (reading.unit, reading.unit_text) == (Unit.UNKNOWN, "ppb")
    assert parse_frame(line([block("I1", unit=b"vpm")])).channel("I1").unit is Unit.VPM


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n", b"\r", b"   ", b"  \r\n", b" \n"])
def test_line_endings_and_trailing_spaces(ending: bytes) -> None:
    frame = parse_frame(line([block("I1"), block("E2")]) + ending)
    assert [r.channel.value for r in frame.readings] == ["I1", "E2"]


def test_wrong_length_with_a_matching_checksum_is_rejected() -> None:
    good = line([block("I1")])
    # one byte too many inside the name field, checksum recomputed so it matches
    region = good[1:-5].replace(b"Oxygen", b"Oxygen!")
    bad = b" " + region + b"%04X;" % checksum(region)
    with pytest.raises(ServomexFrameError, match="expected 72"):
        parse_frame(bad)


def test_a_wrong_checksum_is_rejected_with_both_sums() -> None:
    good = line([block("I1")])
    bad = good[:-5] + b"0000;"
    with pytest.raises(ServomexChecksumError) as info:
        parse_frame(bad)
    assert info.value.expected == 0
    assert info.value.actual == checksum(good[1:-5])


FRAMES = [
    line([block("I1"), block("I2", value=b" 0.084")]),
    line([block(c) for c in ALL_IDS]),
    line([block("D3", alarms=b"1234", fm=b"F ")], afm=b" M"),
]


@pytest.mark.parametrize("ending", [b"\r\n", b"\n", b"\r"])
def test_decoder_splits_on_every_line_ending_byte_by_byte(ending: bytes) -> None:
    decoder = ContinuousDecoder(clock=lambda: 5.0)
    stream = b"".join(f + ending for f in FRAMES) * 2
    out: list[Frame | ServomexError] = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i : i + 1])
    assert all(isinstance(o, Frame) for o in out)
    assert [o.raw for o in out if isinstance(o, Frame)] == FRAMES * 2
    assert (decoder.frames, decoder.errors, decoder.fragments, decoder.pending) == (6, 0, 0, 0)


def test_decoder_two_frames_in_one_chunk_and_a_fragment_first() -> None:
    decoder = ContinuousDecoder()
    out = decoder.feed(FRAMES[0][40:] + b"\r" + FRAMES[1] + b"\r" + FRAMES[2] + b"  \r")
    assert [o.raw for o in out if isinstance(o, Frame)] == [FRAMES[1], FRAMES[2] + b"  "]
    assert (decoder.frames, decoder.errors, decoder.fragments) == (2, 0, 1)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=60), st.sampled_from([b"\r\n", b"\r"]))
def test_decoder_any_chunking_gives_the_same_frames(cuts: list[int], ending: bytes) -> None:
    stream = b"".join(f + ending for f in FRAMES)
    decoder = ContinuousDecoder()
    out: list[Frame | ServomexError] = []
    pos = 0
    for cut in cuts:
        out += decoder.feed(stream[pos : pos + cut])
        pos += cut
    out += decoder.feed(stream[pos:])
    assert [o.raw for o in out if isinstance(o, Frame)] == FRAMES
    assert decoder.errors == 0


def test_a_cut_off_frame_keeps_its_trailing_spaces_in_the_length() -> None:
    cut = line([block("I1")])[:56] + b"  "  # the alarms field, then two spaces
    with pytest.raises(ServomexFrameError, match="frame is 58 bytes"):
        parse_frame(cut + b"\r\n")
