"""The FastCS controllers: one :class:`AnalyserController` per prefix, one
:class:`ChannelController` per channel under it.

PVs (``P`` is the prefix, such as ``SMX1:``; names are FastCS's PascalCase of the attribute):

- analyser: ``P:Fault``, ``P:Maintenance``, ``P:Status`` (ok / FAULT / MAINTENANCE /
  calibrating / no frame / link down), ``P:CalGroup1`` … ``P:CalGroup4`` (phase),
  ``P:Clock``, ``P:Protocol``, ``P:Address``, ``P:DroppedFrames``;
- the link: ``P:Connected``, ``P:LinkStatus``, ``P:Frames`` (frames published),
  ``P:Sequence`` (odd while the frame PVs are being updated, even when they are one
  frame or one INVALID state: a client reading it before and after the frame PVs knows
  whether what it read belongs together),
  ``P:PollErrors``, ``P:Reconnects``, ``P:PollPeriod`` / ``P:PollPeriod_RBV`` (settable);
- calibration: ``P:CalStart`` (write a group 1–4) and ``P:CalStop`` (write 1), refused
  unless the IOC was started with ``--allow-calibration``;
- per channel ``C`` (``I1`` …): ``P:C:Value`` (units, precision, severity: fault MAJOR,
  alarm MINOR, NaN INVALID), ``P:C:Fault``, ``Maintenance``, ``Calibrating``,
  ``WarmingUp``, ``Alarm1`` … ``Alarm4``, ``Ok``, ``Status`` (the flags as text),
  ``DisplayName``, ``Unit``.

Until the first frame, and whenever the link is down or a poll fails, the frame-derived
PVs are INVALID and channel values NaN, never a plausible number. ``P:PVI`` lists them all
for ophyd-async.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from fastcs.attributes import AttrR, AttrRW, AttrW
from fastcs.controllers import Controller
from fastcs.datatypes import Bool, Float, Int, String

from ..codec.checks import check_group
from ..codec.errors import (
    ErrorContext,
    ServomexConfirmationRequiredError,
    ServomexConnectionError,
)
from ..codec.models import (
    ChannelId,
    ChannelInfo,
    ChannelKind,
    ChannelStatus,
    DeviceInfo,
    Frame,
    Reading,
    Unit,
)
from ..codec.status_text import STATUS_FLAGS, flag_values, status_text
from ..driver import Analyzer
from .config import MAX_POLL_PERIOD, MIN_POLL_PERIOD, AnalyserConfig
from .hooks import NO_ALARM, Alarm, AlarmedAttrR, AlarmKind, Severity, requester

__all__ = ["AnalyserController", "ChannelController", "channel_alarm", "flags_text"]

_LOGGER = logging.getLogger(__name__)

UNIT_PRECISION: dict[Unit, int] = {
    Unit.PERCENT: 3,
    Unit.VPM: 1,
    Unit.PPM: 1,
    Unit.MILLIAMP: 1,
}
"""Display precision per unit, as the analyser's broadcast shows it."""

_DEFAULT_PRECISION = 3


def units_text(unit: Unit, unit_text: str) -> str:
    """The unit's display text (the wire text for an unknown unit)."""
    return unit.value if unit is not Unit.UNKNOWN else unit_text


def flags_text(status: ChannelStatus) -> str:
    """The active flags (``fault maint cal warm-up A1`` …) or ``ok``: the status string."""
    return status_text(status)


def channel_alarm(reading: Reading) -> Alarm:
    """A channel value's alarm: NaN INVALID, fault MAJOR, any alarm flag MINOR."""
    if reading.value is None or math.isnan(reading.value):
        return Alarm(Severity.INVALID, AlarmKind.STATE, "the analyser sent no number")
    if reading.status.fault:
        return Alarm(Severity.MAJOR, AlarmKind.STATE, "channel fault")
    active = [f"A{k + 1}" for k, on in enumerate(reading.status.alarms) if on]
    if active:
        return Alarm(Severity.MINOR, AlarmKind.STATE, f"alarm {' '.join(active)}")
    return NO_ALARM


def _value_type(info: ChannelInfo) -> Float:
    # Every field FastCS's CA transport copies into the record on a datatype change
    # (EGU, PREC, LOPR, HOPR) must be set, or the copy fails; LOPR = HOPR = 0 means "no
    # display range", and the PVA alarm these limits would imply is replaced by hooks.py.
    return Float(
        units=units_text(info.unit, info.unit_text),
        prec=UNIT_PRECISION.get(info.unit, _DEFAULT_PRECISION),
        min_alarm=0.0,
        max_alarm=0.0,
    )


class ChannelController(Controller):  # type: ignore[misc]
    """One channel's PVs."""

    def __init__(self, info: ChannelInfo) -> None:
        super().__init__(description=f"channel {info.channel.value}")
        self.channel = info.channel
        self.info = info
        self.value = AlarmedAttrR(_value_type(info), initial_value=math.nan, every_update=True)
        for flag in STATUS_FLAGS:  # fault, maintenance … alarm4: the codec's names and order
            setattr(self, flag, AlarmedAttrR(Bool()))
        self.ok = AlarmedAttrR(Bool())
        self.status = AlarmedAttrR(String(), initial_value="no frame")
        self.display_name = AlarmedAttrR(String(), initial_value=info.name or "")
        self.unit = AlarmedAttrR(String(), initial_value=units_text(info.unit, info.unit_text))

    @property
    def flags(self) -> tuple[AlarmedAttrR[bool], ...]:
        """fault, maintenance, calibrating, warming_up, alarm1…4, ok."""
        flags: list[AlarmedAttrR[bool]] = [getattr(self, flag) for flag in STATUS_FLAGS]
        return (*flags, self.ok)

    def learn(self, info: ChannelInfo) -> None:
        """Take the units and precision ``identify`` found (once the analyser answered)."""
        if (info.unit, info.unit_text) != (self.info.unit, self.info.unit_text):
            self.value.update_datatype(_value_type(info))
        self.info = info

    async def publish(self, reading: Reading, timestamp: float) -> None:
        """One frame's reading of this channel."""
        status = reading.status
        value = math.nan if reading.value is None else reading.value
        await self.value.publish(value, channel_alarm(reading), timestamp)
        flags = (*flag_values(status), status.ok)
        for attr, flag in zip(self.flags, flags, strict=True):
            await attr.publish(flag, NO_ALARM, timestamp)
        await self.status.publish(flags_text(status), NO_ALARM, timestamp)
        await self.display_name.publish(reading.name or "", NO_ALARM, timestamp)
        await self.unit.publish(units_text(reading.unit, reading.unit_text), NO_ALARM, timestamp)

    async def invalidate(self, alarm: Alarm) -> None:
        """No measurement: value NaN, every PV INVALID (the flags keep their last value)."""
        await self.value.publish(math.nan, alarm)
        others: tuple[AlarmedAttrR[Any], ...] = (
            *self.flags,
            self.status,
            self.display_name,
            self.unit,
        )
        for attr in others:
            await attr.publish(attr.get(), alarm)


class AnalyserController(Controller):  # type: ignore[misc]
    """One analyser under one prefix: its status, its channels and its link."""

    def __init__(self, config: AnalyserConfig, *, allow_calibration: bool = False) -> None:
        super().__init__(description=f"Servomex analyser {config.controller_id}"[:40])
        self.set_path([config.controller_id])  # before any attribute: they take the path
        self.config = config
        self.allow_calibration = allow_calibration
        self.context = ErrorContext(
            port=config.port, protocol=config.protocol.value, address=config.address
        )
        self.fault = AlarmedAttrR(Bool())
        self.maintenance = AlarmedAttrR(Bool())
        self.status = AlarmedAttrR(String(), initial_value="no frame")
        self.cal_group1 = AlarmedAttrR(String(), initial_value="idle")
        self.cal_group2 = AlarmedAttrR(String(), initial_value="idle")
        self.cal_group3 = AlarmedAttrR(String(), initial_value="idle")
        self.cal_group4 = AlarmedAttrR(String(), initial_value="idle")
        self.clock = AlarmedAttrR(String(), initial_value="")
        self.protocol = AttrR(String(), initial_value=config.protocol.value)
        self.address = AttrR(Int(), initial_value=config.address)
        self.dropped_frames = AttrR(Int())
        self.connected = AttrR(Bool())
        self.link_status = AttrR(String(), initial_value="connecting")
        self.frames = AttrR(Int())
        self.sequence = AttrR(Int())
        self.poll_errors = AttrR(Int())
        self.reconnects = AttrR(Int())
        self.poll_period = AttrRW(
            Float(units="s", prec=3, min=MIN_POLL_PERIOD, max=MAX_POLL_PERIOD),
            initial_value=config.poll_period,
        )
        self.cal_start = AttrW(Int(min=1, max=4))
        self.cal_start.set_on_put_callback(self._put_cal_start)
        self.cal_stop = AttrW(Int(min=0, max=1))
        self.cal_stop.set_on_put_callback(self._put_cal_stop)
        self.channels: dict[ChannelId, ChannelController] = {}
        self.analyser: Analyzer | None = None
        self.identified = asyncio.Event()
        self.info: DeviceInfo | None = None

    @property
    def cal_groups(self) -> tuple[AlarmedAttrR[Any], ...]:
        """The four calibration-group phase attributes."""
        return (self.cal_group1, self.cal_group2, self.cal_group3, self.cal_group4)

    @property
    def frame_attributes(self) -> tuple[AlarmedAttrR[Any], ...]:
        """The analyser-level attributes that a frame sets (INVALID without one)."""
        return (self.fault, self.maintenance, self.status, *self.cal_groups, self.clock)

    def build_channels(self, infos: tuple[ChannelInfo, ...]) -> None:
        """Add one :class:`ChannelController` per channel (once, before serving)."""
        for info in infos:
            child = ChannelController(info)
            self.channels[info.channel] = child
            self.add_sub_controller(info.channel.value.lower(), child)

    # --- from the link ---------------------------------------------------------------

    async def link_up(self, analyser: Analyzer) -> None:
        """The port is open (frames follow)."""
        self.analyser = analyser
        await self.protocol.update(analyser.protocol.value)
        await self.address.update(analyser.address or 0)
        await self.connected.update(True)
        await self.link_status.update("connected")

    async def learn(self, info: DeviceInfo) -> None:
        """What ``identify`` found: the channel set (if still open) and units."""
        self.info = info
        for channel_info in info.channels:
            child = self.channels.get(channel_info.channel)
            if child is not None:
                child.learn(channel_info)
        self.identified.set()

    async def _begin(self) -> None:
        """``P:Sequence`` odd: an update of the frame PVs is being posted."""
        await self.sequence.update(self.sequence.get() | 1)

    async def _end(self) -> None:
        """``P:Sequence`` even again: the frame PVs are consistent."""
        await self.sequence.update((self.sequence.get() | 1) + 1)

    async def publish(self, frame: Frame, analyser: Analyzer) -> None:
        """One frame: every PV, with the frame's timestamp (``P:Sequence`` odd meanwhile)."""
        await self._begin()
        try:
            await self._publish(frame, analyser)
        finally:
            await self._end()

    async def _publish(self, frame: Frame, analyser: Analyzer) -> None:
        stamp = frame.timestamp
        status = frame.analyser
        await self.fault.publish(status.fault, NO_ALARM, stamp)
        await self.maintenance.publish(status.maintenance, NO_ALARM, stamp)
        for attr, group in zip(self.cal_groups, status.cal_groups, strict=True):
            await attr.publish(group.phase.value, NO_ALARM, stamp)
        clock = status.clock.isoformat(sep=" ") if status.clock else status.clock_text or ""
        await self.clock.publish(clock, NO_ALARM, stamp)
        text = (
            "FAULT"
            if status.fault
            else "MAINTENANCE"
            if status.maintenance
            else "calibrating"
            if status.calibrating
            else "ok"
        )
        await self.status.publish(text, NO_ALARM if text == "ok" else _status_alarm(text), stamp)
        for reading in frame.readings:
            child = self.channels.get(reading.channel)
            if child is not None:
                await child.publish(reading, stamp)
        missing = [c for c in self.channels if c not in frame]
        for channel in missing:
            await self.channels[channel].invalidate(
                Alarm(Severity.INVALID, AlarmKind.STATE, "channel not in the frame")
            )
        await self.dropped_frames.update(analyser.dropped_frames)
        if self.frames.get() == 0:
            _LOGGER.info("%s: first frame", self.config.prefix)
        await self.frames.update(self.frames.get() + 1)
        if self.link_status.get() != "connected":
            await self.link_status.update("connected")

    async def poll_failed(self, message: str) -> None:
        """A poll failed or no frame came in time: INVALID until the next frame."""
        await self.poll_errors.update(self.poll_errors.get() + 1)
        await self.link_status.update(f"no frame: {message}"[:200])
        await self._invalidate(Alarm(Severity.INVALID, AlarmKind.COMM, message[:100]))

    async def link_down(self, message: str) -> None:
        """The port closed or failed: INVALID, and the link reconnects by itself."""
        self.analyser = None
        await self.connected.update(False)
        await self.link_status.update(f"down: {message}"[:200])
        await self._invalidate(Alarm(Severity.INVALID, AlarmKind.COMM, message[:100]))

    async def reconnecting(self) -> None:
        """Count one reconnection attempt."""
        await self.reconnects.update(self.reconnects.get() + 1)

    async def _invalidate(self, alarm: Alarm) -> None:
        await self._begin()
        try:
            for attr in self.frame_attributes:
                await attr.publish(attr.get(), alarm)
            for child in self.channels.values():
                await child.invalidate(alarm)
        finally:
            await self._end()

    # --- calibration -----------------------------------------------------------------

    def _calibration_target(self, what: str) -> Analyzer:
        who = requester()
        if self.allow_calibration is not True:  # only an explicit True enables it
            _LOGGER.warning(
                "%s: %s refused (IOC started without --allow-calibration), asked by %s",
                self.config.prefix, what, who,
            )  # fmt: skip
            raise ServomexConfirmationRequiredError(
                f"{what} through this IOC is disabled; start the IOC with --allow-calibration",
                context=self.context,
            )
        analyser = self.analyser
        if analyser is None:
            raise ServomexConnectionError(
                f"{what}: the analyser is not connected", context=self.context
            )
        _LOGGER.warning("%s: %s asked by %s", self.config.prefix, what, who)
        return analyser

    async def _put_cal_start(self, attr: AttrW[int], group: int) -> None:
        check_group(group)
        analyser = self._calibration_target(f"start calibration of group {group}")
        # the explicit path: the IOC was started with --allow-calibration
        await analyser.start_calibration(group, confirm=True)
        _LOGGER.warning("%s: calibration of group %d started", self.config.prefix, group)

    async def _put_cal_stop(self, attr: AttrW[int], value: int) -> None:
        if value != 1:
            return
        analyser = self._calibration_target("stop calibration")
        await analyser.stop_calibration(confirm=True)
        _LOGGER.warning("%s: calibration stopped", self.config.prefix)


def _status_alarm(text: str) -> Alarm:
    if text == "FAULT":
        return Alarm(Severity.MAJOR, AlarmKind.STATE, "analyser fault")
    if text == "MAINTENANCE":
        return Alarm(Severity.MINOR, AlarmKind.STATE, "maintenance")
    return NO_ALARM


def default_channels(info: DeviceInfo | None) -> tuple[ChannelInfo, ...]:
    """The channels to serve when none were declared: every populated slot plus E1/E2
    (as the direct ophyd-async device builds), or all ten slots if the analyser did not
    answer in time."""
    if info is None:
        return tuple(ChannelInfo(c, None, Unit.UNKNOWN) for c in ChannelId)
    return tuple(c for c in info.channels if c.populated or c.channel.kind is ChannelKind.EXTERNAL)
