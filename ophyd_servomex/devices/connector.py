"""The analyser's ``DeviceConnector``: owns the driver session and follows its frames.

``connect_real`` starts one long-lived *owner task* that opens the session
(the driver's ``Analyzer`` or a bus attachment), learns the channels (``identify``), takes a
first frame, then has the device's :class:`~ophyd_servomex.devices.frames.DeviceFrames`
follow the session's frame hub until ``disconnect()``: one synchronous listener on the
driver's hub, so every frame the driver publishes reaches the signals inside that publish,
once, with no queue or task in between:

* continuous mode — every broadcast frame, as the driver decodes it;
* Modbus mode — every sweep, as the poll that made it ends: a ``trigger()``'s, and a
  background poll's that runs at ``poll_rate_hz`` (settable while running) while anything
  is subscribed (a signal ``subscribe``, ``bps.monitor``), and idles otherwise.

**A lost link** (the driver's hub closing with a :class:`ServomexConnectionError`, or a
``ServomexConnectionError`` / raw ``OSError`` / ``termios.error`` from the background poll
or any action) ends the session at once: the port is released, the frames go down (reads
and actions fail fast with a :class:`ServomexConnectionError` naming the device and port
and saying it is reconnecting; subscribers get the last frame again with alarm severity
INVALID) and ``link_state`` shows ``reconnecting``. The owner task then reopens the session on the
:class:`~ophyd_servomex.devices.link.ReconnectPolicy` schedule until it works; the first
frame after that is published as usual, so the next plan needs no manual step. A reconnect
that finds a different channel set gives up (the device's children no longer match).

The session's task groups live in the owner task, never in the short-lived task
``Device.connect`` runs ``connect_real`` in (see ``docs/architecture.md``). Channels
discovered at connect are built as children *before* the base connector connects the
children, then the whole tree is named again; a reconnect must find the same channel set.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
from ophyd_async.core import DeviceConnector, DeviceMock

from ..codec.errors import (
    ErrorContext,
    ServomexConfigurationError,
    ServomexConnectionError,
    ServomexError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ..codec.models import (
    ChannelId,
    ChannelInfo,
    ChannelKind,
    DeviceInfo,
    ProtocolKind,
)
from .analyser_session import AnalyserSession, SessionFactory
from .frames import DeviceFrames
from .link import ALARM_INVALID, PORT_ERRORS, LinkState, ReconnectPolicy, as_connection_error
from .owner_task import OwnerHandle, fail_ready, start_owner

if TYPE_CHECKING:
    from ophyd_async.core import Device

    from ..driver.schedule import Schedule

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
    something is subscribed (change it with :meth:`set_poll_rate`); ``expected_period``
    bounds how long a continuous-mode ``trigger()`` waits for the next broadcast (three
    periods, at least 0.5 s); ``reconnect`` is the back-off after a lost link (``None``:
    stay down until ``connect(force_reconnect=True)``). ``build_channels`` is how the
    device makes a child per channel: the connector calls it once, with the channel set it
    learnt at the first connect (or the mock set), before the children are connected.
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
        reconnect: ReconnectPolicy | None = None,
        build_channels: Callable[[Sequence[ChannelInfo]], None] | None = None,
    ) -> None:
        self._build_channels = build_channels
        self.frames = DeviceFrames(
            on_demand=self._on_demand, unavailable=self.unavailable, up=False
        )
        """What the device's signals read: the snapshots of the session's frames."""
        self.port = port
        self.requested_protocol = protocol
        self.requested_address = address
        self._last_protocol = protocol
        self._last_address: int | None = address
        self.declared: tuple[ChannelInfo, ...] | None = (
            tuple(declared) if declared is not None else None
        )
        self._poll_rate_hz = self._checked_rate(poll_rate_hz)
        self.expected_period = expected_period
        self.reconnect = reconnect
        self._open_session = open_session
        self._before_connect = before_connect
        self._session: AnalyserSession | None = None
        self._info: DeviceInfo | None = None
        self._owner: OwnerHandle | None = None
        self._demand = asyncio.Event()
        self._schedule: Schedule | None = None
        self._lost: asyncio.Event | None = None
        self._stopping = False
        self._failure: BaseException | None = None
        self._lost_cause: BaseException | None = None
        self._link = LinkState.DISCONNECTED
        self._ever_connected = False
        self._attempt = 0
        self._retry_at: float | None = None
        self._connect_timeout = 10.0
        self._built: tuple[ChannelId, ...] | None = None
        self._clock: Callable[[], float] = time.monotonic
        self._pause: Callable[[float, asyncio.Event], Awaitable[None]] = _pause
        self._sleep: Callable[[float], Awaitable[None]] = anyio.sleep
        self.mock_mode = False
        """True after ``connect(mock=True)``, False after a real connect."""
        self.bus: Any = None
        """The :class:`ServomexBus` the analyser shares, if any (kept here, not on the device)."""
        self.device_label: Callable[[], str] = lambda: "the analyser"
        """The device's name for error messages (the analyser sets it)."""
        self.on_link_change: Callable[[LinkState, int], None] | None = None
        """Called with the new link state and its alarm severity (the ``link_state`` signal)."""

    # --- what the device and its signals see ---------------------------------------------

    @property
    def context(self) -> ErrorContext:
        """Where errors happen: port, protocol and address as known now."""
        session = self._session
        if session is not None:
            protocol, address = session.protocol, session.address
        else:  # the last session's, else what was asked for
            protocol, address = self._last_protocol, self._last_address
        return ErrorContext(port=self.port or None, protocol=protocol.value, address=address)

    @property
    def info(self) -> DeviceInfo | None:
        """What ``identify()`` returned at the last connect."""
        return self._info

    @property
    def session(self) -> AnalyserSession:
        """The open session; raises :meth:`unavailable` when there is none."""
        session = self._session
        if session is None:
            raise self.unavailable()
        return session

    @property
    def connected(self) -> bool:
        """True while the owner task holds an open session."""
        return self._session is not None

    @property
    def link(self) -> LinkState:
        """What the link is doing now."""
        return self._link

    @property
    def failure(self) -> BaseException | None:
        """The error that ended the last session (or failed the last attempt), if any."""
        return self._failure

    @property
    def reconnect_attempts(self) -> int:
        """Reconnect attempts since the link was lost (0 while connected)."""
        return self._attempt

    def unavailable(self) -> ServomexConnectionError:
        """The typed error for a read or action while there is no session.

        It names the device and the port and says what is going on: never connected,
        connect failed (with why), lost and reconnecting (with the cause and the next
        try), or disconnected.
        """
        name = self.device_label()
        where = f" on {self.port}" if self.port else ""
        failure = self._failure
        if self._link is LinkState.RECONNECTING:
            cause = self._lost_cause
            retry = ""
            if self._retry_at is not None:
                wait = max(0.0, self._retry_at - self._clock())
                retry = f": attempt {self._attempt + 1} in {wait:.1f} s"
            last = ""
            if failure is not None and failure is not cause:
                last = f" (the last attempt: {_text(failure)})"
            message = (
                f"{name}: the link to {self.port or 'the analyser'} is lost"
                f"{f' ({_text(cause)})' if cause is not None else ''}; reconnecting by "
                f"itself{retry}{last}. The next plan works once it is back (link_state "
                "shows 'connected')"
            )
        elif failure is not None:
            message = f"{name}{where} is not connected: {failure}; call connect() again"
        elif self._ever_connected:
            message = f"{name}{where} is not connected (it was disconnected); call connect()"
        else:
            message = (
                f"{name}{where} is not connected; connect it first "
                "(init_devices(), or await device.connect())"
            )
        return ServomexConnectionError(message, context=self.context)

    # --- the poll rate --------------------------------------------------------------------

    @property
    def poll_rate_hz(self) -> float:
        """The background Modbus poll rate while something is subscribed."""
        return self._poll_rate_hz

    @property
    def poll_period(self) -> float:
        """Seconds between background polls (``1 / poll_rate_hz``)."""
        return 1.0 / self._poll_rate_hz

    def set_poll_rate(self, rate_hz: float) -> float:
        """Change the background poll rate now: a running poll's schedule re-anchors, and a
        wait for its next slot is cut short to follow the new period."""
        self._poll_rate_hz = self._checked_rate(rate_hz)
        if self._schedule is not None:
            self._schedule.period = self.poll_period
        return self._poll_rate_hz

    def _checked_rate(self, rate_hz: float) -> float:
        if (
            isinstance(rate_hz, bool)
            or not isinstance(rate_hz, (int, float))
            or not (rate_hz > 0 and math.isfinite(rate_hz))
        ):
            raise ServomexValidationError(
                f"poll_rate_hz must be a finite number > 0, not {rate_hz!r}",
                context=ErrorContext(port=self.port or None),
            )
        return float(rate_hz)

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
        self._set_link(LinkState.CONNECTED)

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
        self._connect_timeout = timeout
        try:
            self._owner, info = await start_owner(
                functools.partial(self._own, self._open_session),
                name=f"servomex-owner {self.port}",
                timeout=timeout,
                what="connecting to the analyser",
                context=self.context,
            )
        except BaseException as exc:
            self._failure = exc
            raise
        try:
            declared = (
                tuple(c.channel for c in self.declared) if self.declared is not None else None
            )
            self._build(device, select_channels(info, declared))
        except BaseException as exc:
            await self.disconnect()
            self._failure = exc
            raise
        device.set_name(device.name)
        await super().connect_real(device, timeout, force_reconnect)

    def _build(self, device: Device, channels: Sequence[ChannelInfo]) -> None:
        if self._build_channels is None:
            raise TypeError(f"ServomexConnector of {device!r} was given no build_channels")
        ids = tuple(c.channel for c in channels)
        if self._built is not None:
            self._check_channels(ids)
            return
        self._build_channels(channels)
        self._built = ids

    def _check_channels(self, ids: tuple[ChannelId, ...]) -> None:
        if self._built is not None and ids != self._built:
            raise ServomexConfigurationError(
                f"the analyser now reports channels {', '.join(c.value for c in ids)}, "
                f"but this device was built with {', '.join(c.value for c in self._built)}; "
                "create a new device to follow a changed channel set",
                context=self.context,
            )

    async def disconnect(self) -> None:
        """Stop the owner task (and any reconnecting) and close the session (idempotent)."""
        owner, self._owner = self._owner, None
        if owner is not None:
            self._stopping = True
            try:
                await owner.close()
            finally:
                self._stopping = False
            self._failure = None
        self._lost_cause = None
        self._session = None
        self._attempt = 0
        self._retry_at = None
        self.frames.mark_down()
        self._set_link(LinkState.DISCONNECTED)

    # --- the owner task ------------------------------------------------------------------

    async def _own(
        self,
        open_session: SessionFactory,
        ready: asyncio.Future[DeviceInfo],
        stop: asyncio.Event,
    ) -> None:
        """Hold a session; after a lost link, reopen it on the back-off schedule."""
        self._attempt = 0
        while True:
            try:
                await self._hold_session(open_session, ready, stop)
            except asyncio.CancelledError as exc:
                fail_ready(ready, exc)
                raise
            except Exception as exc:
                self._session = None
                if fail_ready(ready, exc):  # the first connect: connect() raises it
                    self._failure = exc
                    return
                if self._link is LinkState.CONNECTED:  # the session ended by itself
                    self._lost_cause = exc
                self._failure = exc
                if stop.is_set():
                    return
                if self.reconnect is None or isinstance(exc, ServomexConfigurationError):
                    _LOGGER.error("servomex session on %s ended: %s", self.port, exc)
                    self.frames.mark_down()
                    self._set_link(LinkState.DISCONNECTED)
                    return
                if exc is self._lost_cause:
                    _LOGGER.warning("servomex link on %s lost, reconnecting: %s", self.port, exc)
                else:
                    _LOGGER.info("servomex reconnect to %s failed: %s", self.port, exc)
            except BaseException as exc:
                fail_ready(ready, exc)
                raise
            else:
                return  # stopped
            if self.reconnect is None:  # for mypy: handled above
                return
            if stop.is_set():
                return
            delay = self.reconnect.delay(self._attempt)
            self._retry_at = self._clock() + delay
            self._set_link(LinkState.RECONNECTING)
            self.frames.mark_down()
            await self._pause(delay, stop)
            self._retry_at = None
            self._attempt += 1
            if stop.is_set():
                return

    async def _hold_session(
        self,
        open_session: SessionFactory,
        ready: asyncio.Future[DeviceInfo],
        stop: asyncio.Event,
    ) -> None:
        """One session: open it, publish its frames until ``stop`` (returns) or a lost
        link (raises the cause). The port is released before this returns or raises."""
        reconnecting = ready.done()
        lost = asyncio.Event()
        self._lost = lost
        try:
            async with AsyncExitStack() as stack:
                limit = self._connect_timeout if reconnecting else None
                async with asyncio.timeout(limit):
                    session = await stack.enter_async_context(open_session())
                    info = await session.identify()
                    if reconnecting:
                        self._check_channels(self._selected(info))
                    first = await session.poll(wait_fresh=False)
                self._session = session
                self._info = info
                self._failure = self._lost_cause = None
                self.port = self.port or session.port
                self._last_protocol, self._last_address = session.protocol, session.address
                self._ever_connected = True
                if reconnecting:
                    _LOGGER.warning(
                        "servomex link on %s is back after %d attempt(s)",
                        self.port,
                        self._attempt + 1,
                    )
                self._attempt = 0
                self.frames.mark_up()
                self.frames.publish(first, dropped_frames=session.dropped_frames)
                # from here on every frame comes through the driver's hub; unfollowed
                # before the session closes (the stack unwinds in reverse)
                stack.callback(
                    self.frames.follow(
                        session.hub,
                        dropped_frames=lambda: session.dropped_frames,
                        on_close=functools.partial(self._hub_closed, session),
                    )
                )
                self._set_link(LinkState.CONNECTED)
                async with anyio.create_task_group() as tg:
                    if session.protocol.is_modbus:
                        tg.start_soon(self._poll_while_subscribed, session)
                    tg.start_soon(_cancel_when, stop, tg.cancel_scope)
                    tg.start_soon(_cancel_when, lost, tg.cancel_scope)
                    if not ready.done():
                        ready.set_result(info)
                # leaving the stack closes the session: the port is released here
        except Exception as exc:
            if not lost.is_set():
                raise
            # closing a dead port may fail too; the lost link is what counts
            _LOGGER.debug("closing the lost session on %s: %s", self.port, exc)
        finally:
            self._session = None
            self._lost = None
        if lost.is_set() and not stop.is_set():
            failure = self._failure
            if failure is None:
                failure = ServomexConnectionError("the session ended", context=self.context)
            raise failure

    def _selected(self, info: DeviceInfo) -> tuple[ChannelId, ...]:
        declared = tuple(c.channel for c in self.declared) if self.declared is not None else None
        return tuple(c.channel for c in select_channels(info, declared))

    def link_lost(
        self, exc: BaseException, session: AnalyserSession | None = None
    ) -> ServomexConnectionError:
        """Report a lost link (the session's hub closing, the background poll or an
        action); returns the error to raise to the caller: the device's, naming the port
        and saying it reconnects.

        On a shared bus the other analysers on the line are told too, so they all let go
        of the port together and it is really released. ``session`` is the session the
        error came from: an error from an earlier one (an action that outlived it) changes
        nothing.
        """
        error = as_connection_error(exc, self.context)
        lost = self._lost
        stale = session is not None and session is not self._session  # an older session's
        if lost is not None and not lost.is_set() and not self._stopping and not stale:
            self._failure = self._lost_cause = error
            self._session = None  # actions fail fast from now on
            if self.reconnect is not None:
                self._retry_at = None
                self._set_link(LinkState.RECONNECTING)
            self.frames.mark_down()
            lost.set()
            if self.bus is not None:  # the shared port is gone for every analyser on it
                self.bus.line_lost(error, self)
        if self._link is LinkState.RECONNECTING:
            return self.unavailable()
        return error

    def _hub_closed(self, session: AnalyserSession, error: ServomexError | None) -> None:
        """The session's hub closed while followed: the link is gone (a clean close while
        the session is held means the broadcast ended by itself)."""
        if error is None:
            error = ServomexConnectionError("the broadcast ended", context=self.context)
        elif not isinstance(error, ServomexConnectionError):
            error = ServomexConnectionError(f"the broadcast failed: {error}")
        self.link_lost(error, session)

    async def _poll_while_subscribed(self, session: AnalyserSession) -> None:
        """Poll at ``poll_rate_hz`` while anything listens; each sweep reaches the
        signals through the session's hub.

        The slots are ``record()``'s drift-free absolute schedule
        (:class:`~ophyd_servomex.driver.schedule.Schedule`) with its late-tick policy: a
        poll that overruns whole periods skips the slots that passed instead of bursting
        to catch up. A new rate applies at once (a long wait is cut short); after an idle
        spell with no listener the schedule restarts, so the first poll is immediate.
        """
        from ..driver.schedule import Schedule  # the driver is loaded: a session is open

        schedule = Schedule(  # the clock and sleep looked up each time: tests replace them
            self.poll_period, clock=lambda: self._clock(), sleep=lambda t: self._sleep(t)
        )
        self._schedule = schedule
        try:
            while True:
                if not self._demand.is_set():
                    await self._demand.wait()
                    schedule.restart()
                if await schedule.wait() is None:
                    return
                if not self._demand.is_set():  # the last listener left during the wait
                    continue
                try:
                    await session.poll()  # the driver publishes it to the hub: the frames
                except PORT_ERRORS as exc:  # the link is gone: end the session
                    self.link_lost(exc, session)
                    _LOGGER.error("background poll of %s lost the link: %s", self.port, exc)
                    return
                except ServomexError as exc:
                    _LOGGER.warning("background poll of %s failed: %s", self.port, exc)
        finally:
            if self._schedule is schedule:
                self._schedule = None

    def _on_demand(self, listeners: int) -> None:
        if listeners > 0:
            self._demand.set()
        else:
            self._demand.clear()

    def _set_link(self, state: LinkState) -> None:
        self._link = state
        if self.on_link_change is not None:
            severity = 0 if state is LinkState.CONNECTED else ALARM_INVALID
            self.on_link_change(state, severity)

    # --- actions (reached through Command backends) ---------------------------------------

    async def _act[T](self, action: Callable[[AnalyserSession], Awaitable[T]]) -> T:
        """Run an action on the session; a lost link fails fast and starts reconnecting."""
        session = self.session
        try:
            return await action(session)
        except PORT_ERRORS as exc:
            raise self.link_lost(exc, session) from exc

    async def refresh(self) -> None:
        """Take one fresh frame for ``trigger()``: a sweep (Modbus) or the next broadcast.

        Either way it is the session's ``poll``: the frame is published to the session's
        hub, so it is already among the device's frames when the poll returns.
        """
        session = self.session
        if session.protocol.is_modbus:
            frame = await self._act(lambda s: s.poll())
        else:
            wait = max(3.0 * self.expected_period, 0.5)
            try:
                frame = await session.poll(wait_fresh=True, max_wait=wait)
            except ServomexTimeoutError:  # an OSError too, but no sign of a lost link
                raise ServomexTimeoutError(
                    f"no broadcast frame within {wait:g} s; the analyser may have stopped "
                    "broadcasting or been switched to another mode",
                    context=self.context,
                ) from None
            except PORT_ERRORS as exc:
                raise self.link_lost(exc, session) from exc
        # a newer frame may be latest already (a broadcast right after): still report ours
        self.frames.set_triggered(
            self.frames.snapshot_of(frame, dropped_frames=session.dropped_frames)
        )

    async def start_calibration(self, group: int, confirm: bool) -> None:
        """Pulse the group's start coil."""
        await self._act(lambda s: s.start_calibration(group, confirm=confirm))

    async def stop_calibration(self, confirm: bool) -> None:
        """Pulse the stop-all coil."""
        await self._act(lambda s: s.stop_calibration(confirm=confirm))

    async def calibration_phase(self, group: int) -> str:
        """The group's phase, as a :class:`CalPhase` value."""
        state = await self._act(lambda s: s.calibration_status(group))
        return state.phase.value


def _text(exc: BaseException) -> str:
    """An error's message without its context (the device's own error carries that)."""
    if isinstance(exc, ServomexError):
        return exc.message
    return str(exc) or type(exc).__name__


async def _cancel_when(event: asyncio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _pause(delay: float, wake: asyncio.Event) -> None:
    """Wait ``delay`` s, or less if ``wake`` is set meanwhile."""
    try:
        async with asyncio.timeout(delay):
            await wake.wait()
    except TimeoutError:
        pass
