"""Mock mode: what ``ServomexAnalyser.connect(mock=True)`` builds and how it behaves.

Without a port, the analyser builds its declared channels (default: the bench unit's
I1 Oxygen %, I2 CO %, I3 CO₂ %, E1 and E2 in mA), sets every signal to the bench's idle
values with units and precision, and fakes the actions: ``trigger()`` succeeds at once,
and a calibration runs through gas 1 → gas 2 → gas 1 → idle, one phase per state poll,
showing the phase on ``cal_groupN`` and ``calibrating`` on each channel. Tests change any
value with ophyd-async's ``set_mock_value`` and check calls with ``get_mock_execute``; a
channel's ``status`` string and ``ok`` follow its single flags (set ``alarm1`` and
``status`` reads ``"A1"``), as they do from a real frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bluesky.protocols import Reading
from ophyd_async.core import (
    DeviceMock,
    callback_on_mock_execute,
    set_mock_precision,
    set_mock_units,
    set_mock_value,
)

from ..codec.bench import BENCH_CHANNELS, BENCH_IDLE_VALUES
from ..codec.models import (
    CalPhase,
    ChannelInfo,
    ChannelStatus,
    ProtocolKind,
)
from ..codec.status_text import status_from_flags
from .calibration import check_confirm
from .signals import UNIT_PRECISION, CalibrationPhase, units_of
from .status import STATUS_FLAGS, status_text

if TYPE_CHECKING:
    from .analyser import ServomexAnalyser
    from .channel import ServomexChannel

__all__ = [
    "BENCH_CHANNELS",
    "BENCH_IDLE_VALUES",
    "DEFAULT_MOCK_CHANNELS",
    "MockAutocal",
    "ServomexAnalyserMock",
]

DEFAULT_MOCK_CHANNELS: tuple[ChannelInfo, ...] = BENCH_CHANNELS
"""What mock mode builds when no channel set is declared: the bench unit's channels
(:mod:`ophyd_servomex.codec.bench`, shared with the simulator). Every channel starts at
its value in ``BENCH_IDLE_VALUES`` (0.0 for a channel the bench unit lacks)."""

MOCK_CALIBRATION_SCRIPT: tuple[CalPhase, ...] = (
    CalPhase.CAL_GAS_1,
    CalPhase.CAL_GAS_2,
    CalPhase.CAL_GAS_1,
    CalPhase.IDLE,
)
"""The phases a mock calibration reports, one per state poll."""


class MockAutocal:
    """The mock analyser's autocalibration: a scripted phase per state poll."""

    def __init__(self, device: ServomexAnalyser) -> None:
        self._device = device
        self.group: int | None = None
        self.script: list[CalPhase] = []
        self.starts: list[int] = []
        self.stops = 0

    def start(self, group: int, confirm: bool) -> None:
        """Start coil pulse: the group begins its scripted run (only when ``confirm is True``)."""
        check_confirm(confirm, "mock: starting a calibration")
        self.starts.append(group)
        self.group = group
        self.script = list(MOCK_CALIBRATION_SCRIPT)

    def stop(self, confirm: bool) -> None:
        """Stop-all coil pulse: every group goes idle (only when ``confirm is True``)."""
        check_confirm(confirm, "mock: stopping a calibration")
        self.stops += 1
        if self.group is not None:
            self._show(self.group, CalPhase.IDLE)
        self.script = []
        self.group = None

    def phase(self, group: int) -> str:
        """State poll: the next scripted phase of the running group, else idle."""
        if group != self.group or not self.script:
            return CalPhase.IDLE.value
        phase = self.script.pop(0)
        self._show(group, phase)
        if not self.script:
            self.group = None
        return phase.value

    def _show(self, group: int, phase: CalPhase) -> None:
        device = self._device
        signal = (device.cal_group1, device.cal_group2, device.cal_group3, device.cal_group4)
        set_mock_value(signal[group - 1], CalibrationPhase(phase.value))
        calibrating = phase in (CalPhase.CAL_GAS_1, CalPhase.CAL_GAS_2)
        for cid in device.channel_ids:
            set_mock_value(device.channel(cid).calibrating, calibrating)


class ServomexAnalyserMock(DeviceMock["ServomexAnalyser"]):
    """Default mock of :class:`ServomexAnalyser` (registered with ``default_mock_class``)."""

    autocal: MockAutocal | None = None

    async def connect(self, device: ServomexAnalyser) -> None:
        """Give every signal the bench's idle values and fake the calibration actions."""
        connector = device._connector
        protocol = connector.requested_protocol
        if protocol is ProtocolKind.AUTO:
            protocol = ProtocolKind.MODBUS_RTU
        set_mock_value(device.protocol, protocol.value)
        set_mock_value(device.address, connector.requested_address)
        for group_signal in (
            device.cal_group1,
            device.cal_group2,
            device.cal_group3,
            device.cal_group4,
        ):
            set_mock_value(group_signal, CalibrationPhase.IDLE)
        for cid in device.channel_ids:
            channel = device.channel(cid)
            info = channel.info
            units = units_of(info.unit, info.unit_text)
            set_mock_value(channel.value, BENCH_IDLE_VALUES.get(cid, 0.0))
            set_mock_units(channel.value, units)
            precision = UNIT_PRECISION.get(info.unit)
            if precision is not None:
                set_mock_precision(channel.value, precision)
            set_mock_value(channel.display_name, info.name or "")
            set_mock_value(channel.unit, units)
            set_mock_value(channel.ok, True)
            _derive_status(channel)
        self.autocal = autocal = MockAutocal(device)
        callback_on_mock_execute(device.calibration.start_group, autocal.start)
        callback_on_mock_execute(device.calibration.stop_all, autocal.stop)
        callback_on_mock_execute(device.calibration.group_phase, autocal.phase)


def _derive_status(channel: ServomexChannel) -> None:
    """Keep a mock channel's ``status`` and ``ok`` following its single flags, so a test
    that sets ``fault`` (``set_mock_value(analyser.i1.fault, True)``) reads ``"fault"``."""
    flags = channel.flag_signals[: len(STATUS_FLAGS)]
    state = [False] * len(flags)

    def follow(index: int) -> Callable[[dict[str, Reading[bool]]], None]:
        def on_value(readings: dict[str, Reading[bool]]) -> None:
            value = bool(next(iter(readings.values()))["value"])
            if state[index] == value:
                return
            state[index] = value
            status = status_from_flags(state)
            set_mock_value(channel.status, status_text(status))
            set_mock_value(channel.ok, status.ok)

        return on_value

    set_mock_value(channel.status, status_text(ChannelStatus()))
    for index, flag in enumerate(flags):
        flag.subscribe_reading(follow(index))
