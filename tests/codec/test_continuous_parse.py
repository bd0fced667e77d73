"""parse_frame: each shape error raises its named type; odd field contents never reject a frame."""

from __future__ import annotations

from datetime import datetime

import pytest

from ophyd_servomex.codec.continuous import checksum, parse_frame
from ophyd_servomex.codec.errors import (
    ServomexChecksumError,
    ServomexError,
    ServomexFrameError,
    ServomexParseError,
    ServomexProtocolError,
)
from ophyd_servomex.codec.models import CalGroupState, CalPhase, ChannelId, Unit

LINE = (
    b" 06-10-20;02:54:12;  ;S1S1S1S1;05;I1;Oxygen;20.376; % ;    ;  ; ; ;I2;CO    ; 0.084;"
    b" % ;    ;  ; ; ;I3;CO2   ; 0.250; % ;    ;  ; ; ;E1;||||||;   0.0; mA;    ;  ; ; ;"
    b"E2;||||||;   0.0; mA;    ;  ; ; ;2A1D;"
)
I1 = 34  # offset of the first channel block
I2 = I1 + 33


def patch(line: bytes, offset: int, new: bytes, *, resum: bool = True) -> bytes:
    """Overwrite bytes at ``offset``; with ``resum`` write the checksum the new content needs."""
    out = line[:offset] + new + line[offset + len(new) :]
    if resum:
        end = len(out) - 5
        out = out[:end] + b"%04X" % checksum(out[1:end]) + out[end + 4 :]
    return out


def raises[E: ServomexError](kind: type[E], line: bytes, match: str) -> E:
    with pytest.raises(kind, match=match) as info:
        parse_frame(line)
    error = info.value
    assert type(error) is kind
    assert error.context.protocol == "continuous"
    assert error.context.response == line
    return error


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n"])
def test_line_endings_are_accepted(ending: bytes) -> None:
    frame = parse_frame(LINE + ending, timestamp=5.0)
    assert frame.raw == LINE + ending
    assert frame.channel("I1").value == 20.376
    assert frame.timestamp == 5.0


def test_timestamp_defaults_to_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ophyd_servomex.codec.continuous.time.time", lambda: 42.0)
    assert parse_frame(LINE).timestamp == 42.0


def test_parse_accepts_bytearray() -> None:
    assert parse_frame(bytearray(LINE), timestamp=0.0).channel("E2").unit is Unit.MILLIAMP  # type: ignore[arg-type]


def test_wrong_checksum_carries_both_values_and_the_raw_line() -> None:
    bad = patch(LINE, len(LINE) - 5, b"2A1E", resum=False)
    error = raises(ServomexChecksumError, bad, "carries 2A1E, its content sums to 2A1D")
    assert (error.expected, error.actual) == (0x2A1E, 0x2A1D)
    assert error.raw == bad
    assert isinstance(error, ServomexProtocolError)


def test_corrupted_content_fails_the_checksum() -> None:
    bad = patch(LINE, I1 + 10, b"20.377", resum=False) + b"\r\n"
    error = raises(ServomexChecksumError, bad, "checksum mismatch")
    assert (error.expected, error.actual) == (0x2A1D, 0x2A1E)
    assert error.raw == bad


def test_swapped_bytes_pass_the_weak_checksum() -> None:
    swapped = patch(LINE, 16, b"21", resum=False)  # seconds 12 -> 21, as in idle frame 4
    assert parse_frame(swapped).analyser.clock == datetime(2020, 10, 6, 2, 54, 21)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (LINE[:-1], "frame is 203 bytes, expected 204 for 5 channels"),
        (LINE[:100] + b" " + LINE[100:], "frame is 205 bytes, expected 204"),
        (LINE + b";", "frame is 205 bytes"),
        (patch(LINE, 31, b"04"), "frame is 204 bytes, expected 171 for 4 channels"),
        (patch(LINE, 31, b"06"), "expected 237 for 6 channels"),
        (patch(LINE, 31, b"00"), "channel count 00 is outside 01–10"),
        (patch(LINE, 31, b"11"), "channel count 11 is outside 01–10"),
        (LINE[:33], "too short"),
        (b"", "too short"),
        (b"X" + LINE[1:], "must start with a space"),
    ],
)
def test_shape_errors_raise_frame_error(line: bytes, match: str) -> None:
    raises(ServomexFrameError, line, match)


def test_length_is_checked_before_the_checksum() -> None:
    # a dropped byte also breaks the sum, but the length is what is reported
    raises(ServomexFrameError, LINE[:50] + LINE[51:], "frame is 203 bytes")


@pytest.mark.parametrize("count", [b" 5", b"5 ", b"0x", b"+5", b"\xb55"])
def test_non_digit_channel_count_is_a_parse_error(count: bytes) -> None:
    raises(ServomexParseError, patch(LINE, 31, count), "channel count field")


@pytest.mark.parametrize("carried", [b"2A1G", b"2A1 ", b" A1D", b"+A1D", b"2_1D", b"0x1D"])
def test_non_hex_checksum_is_a_parse_error(carried: bytes) -> None:
    raises(ServomexParseError, patch(LINE, len(LINE) - 5, carried, resum=False), "not 4 hex")


def test_lower_case_checksum_is_tolerated() -> None:
    assert parse_frame(patch(LINE, len(LINE) - 5, b"2a1d", resum=False)).channels[0] is (
        ChannelId.I1
    )


def test_a_stray_separator_is_a_token_count_error() -> None:
    bad = patch(LINE, I2 + 6, b";")  # "CO ;  " inside I2's name
    raises(ServomexFrameError, bad, "48 ';'-separated tokens, expected 47 for 5 channels")


def test_a_missing_separator_is_a_token_count_error() -> None:
    bad = patch(LINE, I2 + 2, b" ")  # the ';' after I2's id
    raises(ServomexFrameError, bad, "46 ';'-separated tokens, expected 47")


def test_shifted_field_is_a_width_error() -> None:
    bad = patch(LINE, I2 + 3, b"CO   ;  0.084")  # name one shorter, value one longer
    raises(ServomexFrameError, bad, "block 2 field 'name' is 5 bytes wide, expected 6")


def test_shifted_header_field_is_a_width_error() -> None:
    bad = patch(LINE, 19, b"   ;1S1S1S1;")  # analyser F/M one wider, autocal one shorter
    raises(ServomexFrameError, bad, "header field 'analyser F/M' is 3 bytes wide, expected 2")


def test_unknown_channel_id_is_a_parse_error() -> None:
    raises(ServomexParseError, patch(LINE, I2, b"X1"), r"unknown channel id b'X1'")
    raises(ServomexParseError, patch(LINE, I2, b"i2"), "unknown channel id")


def test_duplicate_channel_is_a_frame_error() -> None:
    raises(ServomexFrameError, patch(LINE, I2, b"I1"), "channel I1 appears more than once")


def test_ten_channels_are_accepted() -> None:
    ids = [b"I1", b"I2", b"I3", b"I4", b"D1", b"D2", b"D3", b"D4", b"E1", b"E2"]
    block = LINE[I1 + 2 : I2]
    body = LINE[1:31] + b"10;" + b"".join(i + block for i in ids)
    line = b" " + body + b"%04X;" % checksum(body)
    frame = parse_frame(line)
    assert [c.value for c in frame.channels] == [i.decode() for i in ids]
    assert len(line) == 39 + 33 * 10


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"++++++", None),
        (b"------", None),
        (b"      ", None),
        (b"   nan", None),
        (b"   inf", None),
        (b"  -inf", None),
        (b"1_0000", None),
        (b"\xff\xfe0.01", None),
        (b"-1.500", -1.5),
        (b"   -12", -12.0),
        (b"  1e+3", 1000.0),
        (b"000.50", 0.5),
    ],
)
def test_values(field: bytes, value: float | None) -> None:
    assert parse_frame(patch(LINE, I1 + 10, field)).channel("I1").value == value


@pytest.mark.parametrize(
    ("field", "name"),
    [
        (b"||||||", None),
        (b"|||   ", "|||"),
        (b"      ", ""),
        (b" CO2  ", "CO2"),
        (b"N2 a b", "N2 a b"),
    ],
)
def test_names(field: bytes, name: str | None) -> None:
    reading = parse_frame(patch(LINE, I1 + 3, field)).channel("I1")
    assert reading.name == name
    assert reading.populated is (name is not None)


@pytest.mark.parametrize(
    ("field", "unit", "text"),
    [
        (b" % ", Unit.PERCENT, "%"),
        (b"vpm", Unit.VPM, "vpm"),
        (b"ppm", Unit.PPM, "ppm"),
        (b" mA", Unit.MILLIAMP, "mA"),
        (b" MA", Unit.MILLIAMP, "MA"),
        (b"g/l", Unit.UNKNOWN, "g/l"),
        (b"   ", Unit.UNKNOWN, ""),
        (b"\xb0C ", Unit.UNKNOWN, "\xb0C"),
    ],
)
def test_units(field: bytes, unit: Unit, text: str) -> None:
    reading = parse_frame(patch(LINE, I1 + 17, field)).channel("I1")
    assert reading.unit is unit
    assert reading.unit_text == text


def test_status_characters() -> None:
    line = patch(LINE, I2 + 21, b"x  4;F ; ;W")
    status = parse_frame(line).channel("I2").status
    assert status.alarms == (True, False, False, True)
    assert (status.fault, status.maintenance, status.calibrating, status.warming_up) == (
        True,
        False,
        False,
        True,
    )
    # only the documented letters set a flag
    odd = parse_frame(patch(LINE, I2 + 26, b"fm;c;w")).channel("I2").status
    assert (odd.fault, odd.maintenance, odd.calibrating, odd.warming_up) == (
        False,
        False,
        False,
        False,
    )
    assert parse_frame(patch(LINE, 19, b" M")).analyser.maintenance is True
    assert parse_frame(patch(LINE, 19, b" M")).analyser.fault is False


def test_autocal_pairs_never_reject_the_frame() -> None:
    groups = parse_frame(patch(LINE, 22, b"C1S2X9S ")).analyser.cal_groups
    assert groups == (
        CalGroupState(1, CalPhase.CAL_GAS_1, cal_gas=1),
        CalGroupState(2, CalPhase.IDLE, cal_gas=2),
        CalGroupState(3, CalPhase.IDLE, cal_gas=None),
        CalGroupState(4, CalPhase.IDLE, cal_gas=None),
    )
    groups = parse_frame(patch(LINE, 22, b"C3c1S0??")).analyser.cal_groups
    assert groups == (
        CalGroupState(1, CalPhase.IDLE, cal_gas=None),
        CalGroupState(2, CalPhase.IDLE, cal_gas=None),
        CalGroupState(3, CalPhase.IDLE, cal_gas=0),
        CalGroupState(4, CalPhase.IDLE, cal_gas=None),
    )


@pytest.mark.parametrize(
    ("clock", "text"),
    [
        (b"31-02-20;02:54:12", "31-02-20 02:54:12"),  # no 31 February
        (b"06-10-20;24:00:00", "06-10-20 24:00:00"),
        (b"00-00-00;00:00:00", "00-00-00 00:00:00"),
        (b"06/10/20;02:54:12", "06/10/20 02:54:12"),
        (b"ab-cd-ef;gh:ij:kl", "ab-cd-ef gh:ij:kl"),
        (b"06-10-20;02:5 :12", "06-10-20 02:5 :12"),
        (b"        ;        ", "                 "),
    ],
)
def test_bad_clock_keeps_the_text_and_the_frame(clock: bytes, text: str) -> None:
    frame = parse_frame(patch(LINE, 1, clock))
    assert frame.analyser.clock is None
    assert frame.analyser.clock_text == text
    assert frame.channel("I1").value == 20.376


def test_clock_reads_day_first_and_20yy() -> None:
    frame = parse_frame(patch(LINE, 1, b"31-12-99;23:59:59"))
    assert frame.analyser.clock == datetime(2099, 12, 31, 23, 59, 59)
    assert frame.analyser.clock_text is None
