"""A scripted stand-in for the driver's Analyzer, for deterministic connector tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ophyd_servomex.codec.errors import ErrorContext, ServomexConnectionError
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


class FakeSubscription:
    """An async iterator of frames with close(), like the driver's Subscription."""

    def __init__(self, session: FakeSession) -> None:
        self.queue: asyncio.Queue[Frame | BaseException] = asyncio.Queue()
        self._session = session
        self.closed = False

    def __aiter__(self) -> FakeSubscription:
        return self

    async def __anext__(self) -> Frame:
        item = await self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.closed = True
        if self in self._session.subscriptions:
            self._session.subscriptions.remove(self)


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
        self.subscriptions: list[FakeSubscription] = []
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

    def frame(self) -> Frame:
        return make_frame(self.value, channels=self.channels, protocol=self._protocol)

    async def identify(self) -> DeviceInfo:
        self.calls.append(("identify", None))
        return DeviceInfo(self.port, self._protocol, self.address, self.channels)

    async def poll(self, *, wait_fresh: bool = True) -> Frame:
        self.calls.append(("poll", wait_fresh))
        self.value += 1.0
        return self.frame()

    def subscribe(self) -> FakeSubscription:
        sub = FakeSubscription(self)
        self.subscriptions.append(sub)
        return sub

    def broadcast(self, frame: Frame | None = None) -> Frame:
        """Deliver a frame to every subscription (a continuous broadcast)."""
        if frame is None:
            self.value += 1.0
            frame = self.frame()
        for sub in self.subscriptions:
            sub.queue.put_nowait(frame)
        return frame

    def lose_link(self) -> None:
        for sub in self.subscriptions:
            sub.queue.put_nowait(
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
            try:
                yield self
            finally:
                self.closed += 1

        return open_session
