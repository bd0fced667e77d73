"""A scripted stand-in for the driver's Analyzer, for deterministic connector tests.

Like the Analyzer it publishes every frame to a real driver :class:`FrameHub` (a new one
each time it is opened, closed when it is closed or the link is lost): a Modbus ``poll``
publishes its sweep, ``broadcast`` publishes a continuous frame, and a continuous ``poll``
waits on the hub for the next one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ophyd_servomex.codec.errors import (
    ErrorContext,
    ServomexConnectionError,
    ServomexTimeoutError,
)
from ophyd_servomex.codec.models import (
    AnalyserStatus,
    CalGroupState,
    CalPhase,
    ChannelId,
    ChannelInfo,
    DeviceInfo,
    Frame,
    ProtocolKind,
    Reading,
    Unit,
)
from ophyd_servomex.devices import AnalyserSession, SessionFactory
from ophyd_servomex.driver import FrameHub

BENCH = (
    ChannelInfo(ChannelId.I1, "Oxygen", Unit.PERCENT, "%"),
    ChannelInfo(ChannelId.I2, "CO", Unit.PERCENT, "%"),
    ChannelInfo(ChannelId.I3, "CO2", Unit.PERCENT, "%"),
    ChannelInfo(ChannelId.I4, None, Unit.UNKNOWN, ""),
    ChannelInfo(ChannelId.E1, None, Unit.MILLIAMP, "mA"),
    ChannelInfo(ChannelId.E2, None, Unit.MILLIAMP, "mA"),
)


def make_frame(
    value: float,
    *,
    channels: tuple[ChannelInfo, ...] = BENCH,
    stamp: float | None = None,
    protocol: ProtocolKind = ProtocolKind.MODBUS_RTU,
    phases: tuple[CalPhase, CalPhase, CalPhase, CalPhase] = (CalPhase.IDLE,) * 4,
) -> Frame:
    """A frame whose every channel reads ``value`` (so a mixed read is easy to spot)."""
    groups = tuple(CalGroupState(g, p) for g, p in enumerate(phases, start=1))
    return Frame(
        readings=tuple(
            Reading(c.channel, value, c.name, c.unit, unit_text=c.unit_text) for c in channels
        ),
        analyser=AnalyserStatus(cal_groups=(groups[0], groups[1], groups[2], groups[3])),
        timestamp=time.time() if stamp is None else stamp,
        protocol=protocol,
        address=None if protocol is ProtocolKind.CONTINUOUS_ASCII else 30,
    )


class FakeSession(AnalyserSession):
    """Answers like an Analyzer from a script; records every call."""

    def __init__(
        self,
        protocol: ProtocolKind = ProtocolKind.MODBUS_RTU,
        channels: tuple[ChannelInfo, ...] = BENCH,
    ) -> None:
        self._protocol = protocol
        self.channels = channels
        self.value = 1.0
        self.calls: list[tuple[str, Any]] = []
        self._hub = FrameHub()
        self._hub.close()  # a new, open one each time the session is opened
        self.published = 0
        """Frames published to the hub (every poll and broadcast, once each)."""
        self.phases: list[CalPhase] = []
        self.opened = 0
        self.closed = 0
        self.fail_open: BaseException | None = None

    @property
    def protocol(self) -> ProtocolKind:
        return self._protocol

    @property
    def address(self) -> int | None:
        return None if self._protocol is ProtocolKind.CONTINUOUS_ASCII else 30

    @property
    def port(self) -> str:
        return "fake://port"

    @property
    def dropped_frames(self) -> int:
        return 7

    @property
    def hub(self) -> FrameHub:
        return self._hub

    @property
    def listening(self) -> bool:
        """True while the session is open and something listens on its hub."""
        return not self._hub.closed and self._hub.listener_count > 0

    def frame(self) -> Frame:
        return make_frame(self.value, channels=self.channels, protocol=self._protocol)

    async def identify(self) -> DeviceInfo:
        self.calls.append(("identify", None))
        return DeviceInfo(self.port, self._protocol, self.address, self.channels)

    def _publish(self, frame: Frame) -> Frame:
        self.published += 1
        self._hub.publish(frame)
        return frame

    async def poll(self, *, wait_fresh: bool = True, max_wait: float | None = None) -> Frame:
        self.calls.append(("poll", wait_fresh))
        if self._protocol.is_modbus:
            self.value += 1.0
            return self._publish(self.frame())
        hub = self._hub
        if not wait_fresh:
            if hub.latest is None:  # connecting: the unit's first broadcast
                self.value += 1.0
                return self._publish(self.frame())
            return hub.latest
        version = hub.version
        with anyio.move_on_after(1.0 if max_wait is None else max_wait):
            while hub.version == version:
                if hub.closed:
                    raise hub.terminal_error or ServomexConnectionError("closed")
                await hub.wait_change()
            assert hub.latest is not None
            return hub.latest
        raise ServomexTimeoutError("no continuous frame")

    def broadcast(self, frame: Frame | None = None) -> Frame:
        """Publish a frame to the hub (a continuous broadcast)."""
        if frame is None:
            self.value += 1.0
            frame = self.frame()
        return self._publish(frame)

    def lose_link(self) -> None:
        """The hub closes with the lost link's error, as the driver's does."""
        self._hub.close(
            ServomexConnectionError("cable pulled", context=ErrorContext(port=self.port))
        )

    async def start_calibration(self, group: int, *, confirm: bool = False) -> None:
        self.calls.append(("start_calibration", (group, confirm)))

    async def stop_calibration(self, *, confirm: bool = False) -> None:
        self.calls.append(("stop_calibration", confirm))

    async def calibration_status(self, group: int) -> CalGroupState:
        self.calls.append(("calibration_status", group))
        phase = self.phases.pop(0) if self.phases else CalPhase.IDLE
        return CalGroupState(group, phase)

    def factory(self) -> SessionFactory:
        @asynccontextmanager
        async def open_session() -> AsyncIterator[AnalyserSession]:
            if self.fail_open is not None:
                raise self.fail_open
            self.opened += 1
            self._hub = FrameHub()
            try:
                yield self
            finally:
                self._hub.close()
                self.closed += 1

        return open_session
