"""The analyser's ``DeviceConnector``: owns the driver session and feeds the frame hub.

``connect_real`` starts one long-lived *owner task* that opens the session
(``open_device`` or a bus attachment), learns the channels (``identify``), takes a first
frame, then keeps the hub fed until ``disconnect()``:

* continuous mode — a pump publishes every broadcast frame the driver delivers;
* Modbus mode — a background poll runs at ``poll_rate_hz`` while anything is subscribed
  to the hub (a signal ``subscribe``, ``bps.monitor``), and idles otherwise.

The session's task groups live in the owner task, never in the short-lived task
``Device.connect`` runs ``connect_real`` in (see ``docs/architecture.md``). Channels
discovered at connect are built as children *before* the base connector connects the
children, then the whole tree is named again; a reconnect must find the same channel set.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
from ophyd_async.core import DeviceConnector, DeviceMock

from ..codec.errors import (
    ErrorContext,
    ServomexConfigurationError,
    ServomexConnectionError,
    ServomexError,
    ServomexTimeoutError,
)
from ..codec.models import (
    ChannelId,
    ChannelInfo,
    ChannelKind,
    DeviceInfo,
    ProtocolKind,
)
from .hub import FrameHub, FrameSnapshot
from .owner import OwnerHandle, fail_ready, start_owner
from .session import AnalyserSession, SessionFactory

if TYPE_CHECKING:
    from ophyd_async.core import Device

    from .analyser import ServomexAnalyser

__all__ = ["ServomexConnector", "select_channels"]

_LOGGER = logging.getLogger(__name__)


def select_channels(
    info: DeviceInfo, declared: Sequence[ChannelId] | None
) -> tuple[ChannelInfo, ...]:
    """The channels to build: the declared ones, else every populated slot plus E1/E2.

    External inputs are kept even when unlabelled (the bench's E1/E2 report 0.0 mA with no
    name), so a unit shows the same channels in all three modes. A declared channel the
    analyser does not report raises :class:`ServomexConfigurationError`.
    """
    by_id = {c.channel: c for c in info.channels}
    if declared is not None:
        missing = [c.value for c in declared if c not in by_id]
        if missing:
            raise ServomexConfigurationError(
                f"channel(s) {', '.join(missing)} not reported by the analyser "
                f"(it has {', '.join(c.value for c in by_id) or 'none'})",
                context=ErrorContext(port=info.port, protocol=info.protocol.value),
            )
        return tuple(by_id[c] for c in declared)
    return tuple(c for c in info.channels if c.populated or c.channel.kind is ChannelKind.EXTERNAL)


class ServomexConnector(DeviceConnector):
    """Owns one analyser's driver session in an owner task and publishes its frames.

    ``open_session`` opens the session; ``declared`` fixes the channel set (and is what
    mock mode builds); ``poll_rate_hz`` is the background Modbus poll rate while
    something is subscribed; ``expected_period`` bounds how long a continuous-mode
    ``trigger()`` waits for the next broadcast (three periods, at least 0.5 s).
    """

    def __init__(
        self,
        *,
        open_session: SessionFactory | None,
        port: str,
        protocol: ProtocolKind,
        address: int,
        declared: Sequence[ChannelInfo] | None,
        poll_rate_hz: float,
        expected_period: float,
        before_connect: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if poll_rate_hz <= 0:
            raise ServomexConfigurationError(f"poll_rate_hz must be > 0, not {poll_rate_hz}")
        self.hub = FrameHub(on_demand=self._on_demand)
        self.port = port
        self.requested_protocol = protocol
        self.requested_address = address
        self.declared: tuple[ChannelInfo, ...] | None = (
            tuple(declared) if declared is not None else None
        )
        self.poll_period = 1.0 / poll_rate_hz
        self.expected_period = expected_period
        self._open_session = open_session
        self._before_connect = before_connect
        self._session: AnalyserSession | None = None
        self._info: DeviceInfo | None = None
        self._owner: OwnerHandle | None = None
        self._demand = asyncio.Event()
        self._failure: BaseException | None = None
        self._built: tuple[ChannelId, ...] | None = None
        self.mock_mode = False
        """True after ``connect(mock=True)``, False after a real connect."""
        self.bus: Any = None
        """The :class:`ServomexBus` the analyser shares, if any (kept here, not on the device)."""

    # --- what the device and its signals see ---------------------------------------------

    @property
    def context(self) -> ErrorContext:
        """Where errors happen: port, protocol and address as known now."""
        session = self._session
        protocol = session.protocol if session is not None else self.requested_protocol
        address = session.address if session is not None else self.requested_address
        return ErrorContext(port=self.port or None, protocol=protocol.value, address=address)

    @property
    def info(self) -> DeviceInfo | None:
        """What ``identify()`` returned at the last connect."""
        return self._info

    @property
    def session(self) -> AnalyserSession:
        """The open session; raises :class:`ServomexConnectionError` when there is none."""
        session = self._session
        if session is None:
            detail = f": {self._failure}" if self._failure is not None else ""
            raise ServomexConnectionError(
                f"the analyser is not connected{detail}; call connect() "
                "(or connect(force_reconnect=True) after a lost link)",
                context=self.context,
            )
        return session

    @property
    def connected(self) -> bool:
        """True while the owner task holds an open session."""
        return self._session is not None

    # --- mock and real connection ---------------------------------------------------------

    async def connect_mock(self, device: Device, mock: DeviceMock[Any]) -> None:
        """Build the declared channels (default: the bench set), then connect in mock mode."""
        from .mock import DEFAULT_MOCK_CHANNELS

        channels = self.declared if self.declared is not None else DEFAULT_MOCK_CHANNELS
        await self.disconnect()
        self.mock_mode = True
        self._build(device, channels)
        device.set_name(device.name)
        await super().connect_mock(device, mock)

    async def connect_real(self, device: Device, timeout: float, force_reconnect: bool) -> None:  # noqa: ASYNC109
        """Open the session in an owner task, build the channels, connect the children."""
        if self._open_session is None:
            raise ServomexConfigurationError(
                "no port given: pass a port (or bus=…), or connect(mock=True)",
                context=self.context,
            )
        if self._before_connect is not None:
            await self._before_connect(timeout)
        await self.disconnect()
        self.mock_mode = False
        self._failure = None
        self._owner, info = await start_owner(
            functools.partial(self._own, self._open_session),
            name=f"servomex-owner {self.port}",
            timeout=timeout,
            what="connecting to the analyser",
            context=self.context,
        )
        try:
            declared = (
                tuple(c.channel for c in self.declared) if self.declared is not None else None
            )
            self._build(device, select_channels(info, declared))
        except BaseException:
            await self.disconnect()
            raise
        device.set_name(device.name)
        await super().connect_real(device, timeout, force_reconnect)

    def _build(self, device: Device, channels: Sequence[ChannelInfo]) -> None:
        from .analyser import ServomexAnalyser

        if not isinstance(device, ServomexAnalyser):
            raise TypeError(f"ServomexConnector serves a ServomexAnalyser, not {device!r}")
        ids = tuple(c.channel for c in channels)
        if self._built is not None:
            if ids != self._built:
                raise ServomexConfigurationError(
                    f"the analyser now reports channels {', '.join(c.value for c in ids)}, "
                    f"but this device was built with {', '.join(c.value for c in self._built)}; "
                    "create a new device to follow a changed channel set",
                    context=self.context,
                )
            return
        _add_channels(device, channels)
        self._built = ids

    async def disconnect(self) -> None:
        """Stop the owner task and close the session (idempotent)."""
        owner, self._owner = self._owner, None
        if owner is not None:
            await owner.close()

    # --- the owner task ------------------------------------------------------------------

    async def _own(
        self,
        open_session: SessionFactory,
        ready: asyncio.Future[DeviceInfo],
        stop: asyncio.Event,
    ) -> None:
        try:
            async with open_session() as session:
                info = await session.identify()
                first = await session.poll(wait_fresh=False)
                self._session = session
                self._info = info
                self.hub.publish(first, dropped_frames=session.dropped_frames)
                async with anyio.create_task_group() as tg:
                    if session.protocol.is_modbus:
                        tg.start_soon(self._poll_while_subscribed, session, tg.cancel_scope)
                    else:
                        tg.start_soon(self._pump_broadcast, session, tg.cancel_scope)
                    if not ready.done():
                        ready.set_result(info)
                    await stop.wait()
                    tg.cancel_scope.cancel()
        except BaseException as exc:
            self._failure = exc
            if not fail_ready(ready, exc) and not isinstance(exc, asyncio.CancelledError):
                _LOGGER.error("servomex session on %s ended: %s", self.port, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._session = None

    async def _pump_broadcast(self, session: AnalyserSession, scope: anyio.CancelScope) -> None:
        subscription = session.subscribe()
        try:
            async for frame in subscription:
                self.hub.publish(frame, dropped_frames=session.dropped_frames)
        except ServomexError as exc:
            self._failure = exc
            _LOGGER.error("broadcast from %s lost: %s", self.port, exc)
        finally:
            close = getattr(subscription, "close", None)
            if close is not None:
                close()
        if self._failure is None:
            self._failure = ServomexConnectionError("the broadcast ended", context=self.context)
        scope.cancel()

    async def _poll_while_subscribed(
        self, session: AnalyserSession, scope: anyio.CancelScope
    ) -> None:
        next_tick = time.monotonic()
        while True:
            if not self._demand.is_set():
                await self._demand.wait()
                next_tick = time.monotonic()
            try:
                frame = await session.poll()
            except ServomexConnectionError as exc:  # the link is gone: end the session
                self._failure = exc
                _LOGGER.error("background poll of %s lost the link: %s", self.port, exc)
                scope.cancel()
                return
            except ServomexError as exc:
                _LOGGER.warning("background poll of %s failed: %s", self.port, exc)
            else:
                self.hub.publish(frame, dropped_frames=session.dropped_frames)
            next_tick += self.poll_period
            delay = next_tick - time.monotonic()
            if delay < 0:  # late: restart the schedule rather than burst to catch up
                next_tick = time.monotonic()
                delay = 0.0
            await asyncio.sleep(delay)

    def _on_demand(self, listeners: int) -> None:
        if listeners > 0:
            self._demand.set()
        else:
            self._demand.clear()

    # --- actions (reached through Command backends) ---------------------------------------

    async def refresh(self) -> None:
        """Take one fresh frame for ``trigger()``: a sweep (Modbus) or the next broadcast."""
        session = self.session
        if session.protocol.is_modbus:
            frame = await session.poll()
            snapshot = self.hub.publish(frame, dropped_frames=session.dropped_frames)
            if snapshot is None:  # a newer frame is already latest: still report ours
                snapshot = FrameSnapshot(frame, self.hub.sequence, session.dropped_frames)
        else:
            wait = max(3.0 * self.expected_period, 0.5)
            seen = self.hub.sequence
            try:
                async with asyncio.timeout(wait):
                    snapshot = await self.hub.next_snapshot(seen)
            except TimeoutError:
                raise ServomexTimeoutError(
                    f"no broadcast frame within {wait:g} s; the analyser may have stopped "
                    "broadcasting or been switched to another mode",
                    context=self.context,
                ) from None
        self.hub.set_triggered(snapshot)

    async def start_calibration(self, group: int, confirm: bool) -> None:
        """Pulse the group's start coil."""
        await self.session.start_calibration(group, confirm=confirm)

    async def stop_calibration(self, confirm: bool) -> None:
        """Pulse the stop-all coil."""
        await self.session.stop_calibration(confirm=confirm)

    async def calibration_phase(self, group: int) -> str:
        """The group's phase, as a :class:`CalPhase` value."""
        state = await self.session.calibration_status(group)
        return state.phase.value


def _add_channels(device: ServomexAnalyser, channels: Sequence[ChannelInfo]) -> None:
    device._add_channels(channels)
