"""build_frame: exact wire text, validation, and build → parse round trips (hypothesis)."""

from __future__ import annotations

import contextlib
import string
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ophyd_servomex.codec.continuous import (
    NO_VALUE_TEXT,
    build_frame,
    checksum,
    frame_length,
    parse_frame,
)
from ophyd_servomex.codec.errors import ServomexError, ServomexValidationError
from ophyd_servomex.codec.models import (
    AnalyserStatus,
    CalGroupState,
    CalPhase,
    ChannelId,
    ChannelStatus,
    Frame,
    Reading,
    Unit,
)

CLOCK = datetime(2020, 10, 6, 2, 54, 12)


def one(reading: Reading, **analyser: object) -> Frame:
    status = AnalyserStatus(clock=CLOCK, **analyser)  # type: ignore[arg-type]
    return Frame(readings=(reading,), analyser=status)


def block_of(frame: Frame) -> bytes:
    """The first channel block of the built frame, without its closing ';'."""
    return build_frame(frame, line_ending=b"")[34:66]


def value_field(value: float | None, unit: Unit = Unit.PERCENT) -> bytes:
    return block_of(one(Reading(ChannelId.I1, value, "Oxygen", unit)))[10:16]


@pytest.mark.parametrize(
    ("value", "unit", "field"),
    [
        (20.376, Unit.PERCENT, b"20.376"),
        (0.25, Unit.PERCENT, b" 0.250"),
        (0.0, Unit.MILLIAMP, b"   0.0"),
        (12.34, Unit.MILLIAMP, b"  12.3"),
        (123.456, Unit.VPM, b"123.46"),
        (1234.5, Unit.VPM, b"1234.5"),
        (12345.6, Unit.PPM, b" 12346"),
        (999999.0, Unit.PPM, b"999999"),
        (-20.376, Unit.PERCENT, b"-20.38"),
        (-0.084, Unit.UNKNOWN, b"-0.084"),
        (None, Unit.PERCENT, b"------"),
        (float("nan"), Unit.PERCENT, b"------"),
        (float("inf"), Unit.PERCENT, b"------"),
    ],
)
def test_value_formatting(value: float | None, unit: Unit, field: bytes) -> None:
    assert value_field(value, unit) == field


def test_no_value_text_parses_back_to_none() -> None:
    assert NO_VALUE_TEXT == b"------"
    frame = one(Reading(ChannelId.I1, None, "Oxygen", Unit.PERCENT, unit_text="%"))
    assert parse_frame(build_frame(frame), timestamp=0.0).readings == frame.readings


@pytest.mark.parametrize("value", [1_000_000.0, -100_000.0, 1e12])
def test_value_too_wide_is_rejected(value: float) -> None:
    with pytest.raises(ServomexValidationError, match="6-character value field"):
        value_field(value)


def test_block_layout_with_every_flag() -> None:
    status = ChannelStatus(True, True, True, True, (False, True, False, True))
    reading = Reading(ChannelId.D3, 1.5, "CO₂", Unit.VPM, status, unit_text="vpm")
    assert block_of(one(reading)) == b"D3;CO2   ; 1.500;vpm; 2 4;FM;C;W"


@pytest.mark.parametrize(
    ("name", "field"),
    [(None, b"||||||"), ("CO", b"CO    "), ("Oxygen", b"Oxygen"), ("N₂O₂", b"N2O2  ")],
)
def test_names(name: str | None, field: bytes) -> None:
    assert block_of(one(Reading(ChannelId.I1, 0.0, name, Unit.PERCENT)))[3:9] == field


@pytest.mark.parametrize("name", ["Oxygen1", "CO;", "Ø2", "a\tb", "µ"])
def test_names_the_wire_cannot_carry(name: str) -> None:
    with pytest.raises(ServomexValidationError, match="name") as info:
        build_frame(one(Reading(ChannelId.I1, 0.0, name, Unit.PERCENT)))
    assert info.value.context.protocol == "continuous"
    assert info.value.context.channel == "I1"


@pytest.mark.parametrize(
    ("unit", "text", "field"),
    [
        (Unit.PERCENT, "%", b" % "),
        (Unit.MILLIAMP, "mA", b" mA"),
        (Unit.VPM, "vpm", b"vpm"),
        (Unit.PPM, "ppm", b"ppm"),
        (Unit.UNKNOWN, "g/l", b"g/l"),
        (Unit.UNKNOWN, "C", b"  C"),
        (Unit.UNKNOWN, "", b"   "),
    ],
)
def test_units(unit: Unit, text: str, field: bytes) -> None:
    reading = Reading(ChannelId.E1, 4.0, None, unit, unit_text=text)
    assert block_of(one(reading))[17:20] == field


@pytest.mark.parametrize("text", ["mg/m3", "°C", "a;b"])
def test_unknown_units_the_wire_cannot_carry(text: str) -> None:
    with pytest.raises(ServomexValidationError, match="unit"):
        build_frame(one(Reading(ChannelId.E1, 4.0, None, Unit.UNKNOWN, unit_text=text)))


def test_header() -> None:
    groups = (
        CalGroupState(1, CalPhase.CAL_GAS_1, cal_gas=1),
        CalGroupState(2, CalPhase.CAL_GAS_2, cal_gas=2),
        CalGroupState(3, CalPhase.SAMPLING, cal_gas=2),
        CalGroupState(4, CalPhase.IDLE, cal_gas=None),
    )
    frame = one(Reading(ChannelId.I1, 0.0), fault=True, cal_groups=groups)
    assert build_frame(frame)[:34] == b" 06-10-20;02:54:12;F ;C1C2S2S?;01;"


@pytest.mark.parametrize(
    ("analyser", "clock"),
    [
        (AnalyserStatus(), b"01-01-00;00:00:00"),
        (AnalyserStatus(clock_text="31-02-20 02:54:12"), b"31-02-20;02:54:12"),
        (AnalyserStatus(clock_text="ab-cd-ef;gh:ij:kl"), b"ab-cd-ef;gh:ij:kl"),
        (
            AnalyserStatus(clock=datetime(2099, 12, 31, 23, 59, 59, 999), clock_text="x"),
            b"31-12-99;23:59:59",
        ),
    ],
)
def test_clock(analyser: AnalyserStatus, clock: bytes) -> None:
    frame = Frame(readings=(Reading(ChannelId.I1, 1.0),), analyser=analyser)
    assert build_frame(frame)[1:18] == clock


@pytest.mark.parametrize(
    "analyser",
    [
        AnalyserStatus(clock=datetime(1999, 12, 31)),
        AnalyserStatus(clock=datetime(2100, 1, 1)),
        AnalyserStatus(clock_text="06-10-20"),
        AnalyserStatus(clock_text="06-10-20T02:54:12"),
        AnalyserStatus(clock_text="06;10-20 02:54:12"),
        AnalyserStatus(cal_groups=(CalGroupState(1, cal_gas=12),) * 4),
        AnalyserStatus(cal_groups=(CalGroupState(1),) * 3),  # type: ignore[arg-type]
    ],
)
def test_analyser_states_the_wire_cannot_carry(analyser: AnalyserStatus) -> None:
    with pytest.raises(ServomexValidationError):
        build_frame(Frame(readings=(Reading(ChannelId.I1, 1.0),), analyser=analyser))


@pytest.mark.parametrize(
    "readings",
    [
        (),
        (*(Reading(c, 0.0) for c in ChannelId), Reading(ChannelId.I1, 0.0)),
        (Reading(ChannelId.I1, 0.0), Reading(ChannelId.I1, 1.0)),
        (Reading("X9", 0.0),),  # type: ignore[arg-type]
    ],
)
def test_channel_sets_the_wire_cannot_carry(readings: tuple[Reading, ...]) -> None:
    with pytest.raises(ServomexValidationError):
        build_frame(Frame(readings=readings))


@pytest.mark.parametrize("ending", [b"\r\n", b"\n", b""])
def test_line_ending_and_checksum(ending: bytes) -> None:
    out = build_frame(
        one(Reading(ChannelId.I1, 20.376, "Oxygen", Unit.PERCENT)), line_ending=ending
    )
    content = out[: len(out) - len(ending)]
    assert out.endswith(ending)
    assert len(content) == frame_length(1) == 72
    assert content[-5:] == b"%04X;" % checksum(content[1:-5])


# --- hypothesis: build → parse is the identity on everything the wire can carry ----------

NAME_CHARS = "".join(c for c in string.printable if c.isprintable() and c != ";")


@st.composite
def values(draw: st.DrawFn, unit: Unit) -> float | None:
    """None, or a decimal that fits the 6-character field exactly as drawn."""
    if draw(st.integers(0, 9)) == 0:
        return None
    places = draw(st.integers(0, 1 if unit is Unit.MILLIAMP else 3))
    width = 6 if places == 0 else 5  # digits left beside the decimal point
    digits = draw(st.integers(-(10 ** (width - 1) - 1), 10**width - 1))
    return digits / 10.0**places


names = st.one_of(
    st.none(),
    st.text(NAME_CHARS, max_size=6).map(lambda s: s.strip(" ")).filter(lambda s: s != "||||||"),
)


@st.composite
def units(draw: st.DrawFn) -> tuple[Unit, str]:
    unit = draw(st.sampled_from(Unit))
    if unit is not Unit.UNKNOWN:
        return unit, unit.value
    text = draw(
        st.text(NAME_CHARS, max_size=3)
        .map(lambda s: s.strip(" "))
        .filter(lambda s: Unit.from_text(s) is Unit.UNKNOWN)
    )
    return unit, text


statuses = st.builds(
    ChannelStatus,
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)


@st.composite
def readings(draw: st.DrawFn, channel: ChannelId) -> Reading:
    unit, text = draw(units())
    return Reading(
        channel=channel,
        value=draw(values(unit)),
        name=draw(names),
        unit=unit,
        status=draw(statuses),
        unit_text=text,
    )


@st.composite
def groups(draw: st.DrawFn, group: int) -> CalGroupState:
    phase = draw(st.sampled_from([CalPhase.IDLE, CalPhase.CAL_GAS_1, CalPhase.CAL_GAS_2]))
    if phase is CalPhase.CAL_GAS_1:
        return CalGroupState(group, phase, cal_gas=1)
    if phase is CalPhase.CAL_GAS_2:
        return CalGroupState(group, phase, cal_gas=2)
    return CalGroupState(group, phase, cal_gas=draw(st.none() | st.integers(0, 9)))


bad_clock_texts = st.builds(
    lambda d, m, rest: f"{d:02d}-{m:02d}-{rest}",
    st.integers(32, 99),
    st.integers(0, 99),
    st.sampled_from(["20 02:54:12", "99 23:59:59", "ab cd:ef:gh"]),
)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    channels = draw(st.lists(st.sampled_from(ChannelId), min_size=1, max_size=10, unique=True))
    clock = draw(
        st.none()
        | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
            lambda d: d.replace(microsecond=0)
        )
    )
    analyser = AnalyserStatus(
        fault=draw(st.booleans()),
        maintenance=draw(st.booleans()),
        cal_groups=(draw(groups(1)), draw(groups(2)), draw(groups(3)), draw(groups(4))),
        clock=clock,
        clock_text=None if clock is not None else draw(bad_clock_texts),
    )
    return Frame(
        readings=tuple(draw(readings(c)) for c in channels),
        analyser=analyser,
        timestamp=draw(st.floats(0, 2e9)),
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(), ending=st.sampled_from([b"\r\n", b"\n", b""]))
def test_build_then_parse_is_the_identity(frame: Frame, ending: bytes) -> None:
    wire = build_frame(frame, line_ending=ending)
    n = len(frame.readings)
    assert len(wire) == frame_length(n) + len(ending)
    parsed = parse_frame(wire, timestamp=frame.timestamp)
    assert parsed == frame
    assert parsed.raw == wire
    assert build_frame(parsed, line_ending=ending) == wire


@settings(max_examples=300)
@given(line=st.binary(max_size=400))
def test_parse_raises_only_servomex_errors_on_arbitrary_bytes(line: bytes) -> None:
    with contextlib.suppress(ServomexError):
        parse_frame(line, timestamp=0.0)


@settings(max_examples=300)
@given(frame=frames(), data=st.data())
def test_parse_raises_only_servomex_errors_on_damaged_frames(
    frame: Frame, data: st.DataObject
) -> None:
    wire = bytearray(build_frame(frame))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(wire) - 1))
        wire[at] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ServomexError):
        parse_frame(bytes(wire), timestamp=0.0)
