"""The continuous codec against the real captures and the synthetic flag vector.

Expected values: docs/protocol.md §4.10.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest

from ophyd_servomex.codec.continuous import build_frame, checksum, parse_frame
from ophyd_servomex.codec.models import (
    CalGroupState,
    CalPhase,
    ChannelId,
    ChannelStatus,
    ProtocolKind,
    Unit,
)

# (file, frame index) -> (analyser time, carried checksum, I1, I2, I3 values),
# from docs/protocol.md §4.10
IDLE = [
    ("02:54:12", "2A1D", 20.376, 0.084, 0.250),
    ("02:54:14", "2A1F", 20.376, 0.084, 0.250),
    ("02:54:16", "2A21", 20.376, 0.084, 0.250),
    ("02:54:18", "2A23", 20.376, 0.084, 0.250),
    ("02:54:21", "2A1D", 20.376, 0.084, 0.250),
    ("02:54:23", "2A1F", 20.376, 0.084, 0.250),
]
LIVE = [
    ("09:17:58", "2A36", 20.379, 0.084, 0.247),
    ("09:18:00", "2A29", 20.378, 0.084, 0.247),
    ("09:18:03", "2A2C", 20.378, 0.084, 0.247),
    ("09:18:05", "2A2E", 20.378, 0.084, 0.247),
    ("09:18:07", "2A30", 20.378, 0.084, 0.247),
    ("09:18:09", "2A32", 20.378, 0.084, 0.247),
]
EXPECTED = IDLE + LIVE

IDLE_FRAME_0 = (
    b" 06-10-20;02:54:12;  ;S1S1S1S1;05;I1;Oxygen;20.376; % ;    ;  ; ; ;I2;CO    ; 0.084;"
    b" % ;    ;  ; ; ;I3;CO2   ; 0.250; % ;    ;  ; ; ;E1;||||||;   0.0; mA;    ;  ; ; ;"
    b"E2;||||||;   0.0; mA;    ;  ; ; ;2A1D;"
)
FLAG_VECTOR = bytes.fromhex(
    "20 30 36 2d 31 30 2d 32 30 3b 30 32 3a 35 34 3a 31 32 3b 46 4d 3b 43 32 53 31 53 31 53 31 3b"
    "30 31 3b 49 31 3b 4f 78 79 67 65 6e 3b 32 30 2e 33 37 36 3b 20 25 20 3b 31 20 33 20 3b 46 4d"
    "3b 43 3b 57 3b 30 46 37 33 3b 0d 0a"
)


def test_capture_files_are_the_published_ones(idle_capture: bytes, live_capture: bytes) -> None:
    assert hashlib.md5(idle_capture).hexdigest() == "88487bc3a26d18bf2afecd18476bf708"
    assert hashlib.md5(live_capture).hexdigest() == "de4c3c279a644c841c963e1071849273"
    assert len(idle_capture) == len(live_capture) == 1230


def test_first_idle_frame_is_the_published_text(capture_lines: list[bytes]) -> None:
    assert capture_lines[0] == IDLE_FRAME_0
    assert all(len(line) == 204 for line in capture_lines)


@pytest.mark.parametrize("index", range(12))
def test_every_captured_frame_decodes_to_the_vectors(
    capture_lines: list[bytes], index: int
) -> None:
    clock, carried, o2, co, co2 = EXPECTED[index]
    line = capture_lines[index]
    frame = parse_frame(line, timestamp=1234.5)

    assert frame.timestamp == 1234.5
    assert frame.protocol is ProtocolKind.CONTINUOUS_ASCII
    assert frame.address is None
    assert frame.raw == line
    assert line[-5:] == carried.encode() + b";"
    assert checksum(line[1:-5]) == int(carried, 16)

    hour, minute, second = (int(part) for part in clock.split(":"))
    analyser = frame.analyser
    assert analyser.clock == datetime(2020, 10, 6, hour, minute, second)
    assert analyser.clock_text is None
    assert analyser.fault is False
    assert analyser.maintenance is False
    assert analyser.cal_groups == tuple(
        CalGroupState(g, CalPhase.IDLE, cal_gas=1) for g in (1, 2, 3, 4)
    )

    assert frame.channels == (
        ChannelId.I1,
        ChannelId.I2,
        ChannelId.I3,
        ChannelId.E1,
        ChannelId.E2,
    )
    expected = [
        (ChannelId.I1, o2, "Oxygen", Unit.PERCENT, "%"),
        (ChannelId.I2, co, "CO", Unit.PERCENT, "%"),
        (ChannelId.I3, co2, "CO2", Unit.PERCENT, "%"),
        (ChannelId.E1, 0.0, None, Unit.MILLIAMP, "mA"),
        (ChannelId.E2, 0.0, None, Unit.MILLIAMP, "mA"),
    ]
    for reading, (cid, value, name, unit, unit_text) in zip(frame.readings, expected, strict=True):
        assert reading.channel is cid
        assert reading.value == value
        assert reading.name == name
        assert reading.unit is unit
        assert reading.unit_text == unit_text
        assert reading.status == ChannelStatus()
        assert reading.status.ok
    assert frame.values[ChannelId.I3] == co2


@pytest.mark.parametrize("index", range(12))
def test_build_reproduces_every_captured_frame_byte_for_byte(
    capture_lines: list[bytes], index: int
) -> None:
    line = capture_lines[index]
    assert build_frame(parse_frame(line), line_ending=b"\n") == line + b"\n"
    assert build_frame(parse_frame(line)) == line + b"\r\n"


def test_whole_captures_rebuild_exactly(idle_capture: bytes, live_capture: bytes) -> None:
    for capture in (idle_capture, live_capture):
        lines = capture.split(b"\n")[:-1]
        rebuilt = b"".join(build_frame(parse_frame(x), line_ending=b"\n") for x in lines)
        assert rebuilt == capture


def test_synthetic_flag_vector_sets_every_flag() -> None:
    frame = parse_frame(FLAG_VECTOR, timestamp=0.0)
    analyser = frame.analyser
    assert analyser.fault is True
    assert analyser.maintenance is True
    assert analyser.cal_groups == (
        CalGroupState(1, CalPhase.CAL_GAS_2, cal_gas=2),
        CalGroupState(2, CalPhase.IDLE, cal_gas=1),
        CalGroupState(3, CalPhase.IDLE, cal_gas=1),
        CalGroupState(4, CalPhase.IDLE, cal_gas=1),
    )
    assert analyser.calibrating is True
    assert analyser.clock == datetime(2020, 10, 6, 2, 54, 12)
    (reading,) = frame.readings
    assert reading.channel is ChannelId.I1
    assert reading.name == "Oxygen"
    assert reading.value == 20.376
    assert reading.unit is Unit.PERCENT
    assert reading.status == ChannelStatus(
        fault=True,
        maintenance=True,
        calibrating=True,
        warming_up=True,
        alarms=(True, False, True, False),
    )
    assert reading.status.ok is False
    assert checksum(FLAG_VECTOR[1:-7]) == 0x0F73
    assert build_frame(frame) == FLAG_VECTOR


def test_checksum_region_is_exactly_offset_1_to_the_separator() -> None:
    line = IDLE_FRAME_0
    end = len(line) - 5  # the checksum field starts here
    assert checksum(line[1:end]) == 0x2A1D == 10781
    assert checksum(line[0:end]) == 0x2A3D  # plus the start space
    assert checksum(line[1 : end - 1]) == 0x29E2  # minus the pre-checksum ';'
    assert checksum(line[1:]) == 0x2B40  # through the closing ';'


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 363, 1000, 70000])
def test_checksum_is_the_byte_sum_modulo_65536(size: int) -> None:
    region = bytes((i * 37 + 255) % 256 for i in range(size))
    assert checksum(region) == sum(region) % 65536
    assert checksum(b"\xff" * size) == (255 * size) % 65536
