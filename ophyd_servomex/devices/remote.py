"""``RemoteServomexAnalyser``: an analyser served by ``ophyd-servomex ioc``, read over EPICS.

``ServomexAnalyser("pva://SMX1:")`` builds one (see :func:`is_remote_port`). The device is
filled from the IOC's PVI structure with ophyd-async's :func:`fastcs_connector` (no PV list
is written here), and offers what the direct device offers, under the same names: per
channel ``<name>-<id>-value`` (with units, precision and alarm severity; hinted unless the
channel is an unlabelled E1/E2) and ``<name>-<id>-status`` (the IOC's ``P:C:Status``, the
same flag string the direct device reports), the single flags staying children that are
not read; analyser ``fault``, ``maintenance``, ``cal_group1`` … ``cal_group4`` (text over
PVA; ``describe()`` lists the phases as ``choices`` like the direct device),
``clock``, ``dropped_frames``; configuration ``protocol``, ``address`` and each channel's
``display_name`` and ``unit``; ``calibration`` (a ``Movable`` with progress), ``trigger()``
(waits for the IOC's next frame) and whole-device monitoring (one event per frame).

As on the direct device, ``link_state`` (a :class:`LinkState`: ``connected`` while the
IOC has the port open, ``reconnecting`` while it reopens a lost one, ``disconnected``
before it first opened it) and the settable ``poll_rate_hz`` (``1 / P:PollPeriod``,
``bps.mv(analyser.poll_rate_hz, 4)``) are children that are not read into events. The
IOC's own link PVs (``connected``, ``link_status``, ``frames``, ``sequence``,
``poll_errors``, ``reconnects``, ``poll_period``) are children too.

**One frame per event.** The IOC serves each field as a PV of its own, so reading them
one by one could mix two frames. ``read()`` reads ``P:Sequence`` before and after the
fields (the IOC makes it odd while it posts a frame and even after) and reads again until
nothing was posted in between, as the direct device pins one frame.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Annotated as A
from typing import Any

from bluesky.protocols import Reading as BlueskyReading
from event_model import DataKey
from ophyd_async.core import (
    DEFAULT_TIMEOUT,
    AsyncStatus,
    Callback,
    Device,
    DeviceMock,
    SignalR,
    SignalRW,
    SignalW,
    StandardReadable,
    StandardReadableFormat,
    WatchableAsyncStatus,
    derived_signal_r,
    derived_signal_rw,
    wait_for_value,
)
from ophyd_async.fastcs.core import fastcs_connector

from ..codec.errors import (
    ErrorContext,
    ServomexConfigurationError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ..codec.models import ChannelId, ChannelKind
from .calibration import ServomexCalibration
from .channel_lookup import lookup_channel
from .link import LinkState
from .signals import CalibrationPhase

__all__ = ["REMOTE_SCHEMES", "RemoteServomexAnalyser", "is_remote_port", "remote_prefix"]

REMOTE_SCHEMES = ("pva://",)
"""Port strings that name an IOC prefix instead of a serial port."""

_CHANNEL_READS = ("status",)
_CHANNEL_CONFIG = ("display_name", "unit")

Format = StandardReadableFormat

COHERENT_READ_TRIES = 50
"""How often ``read()`` reads the fields again because the IOC posted a frame meanwhile."""


def link_state(connected: bool, link_status: str) -> LinkState:
    """The direct device's :class:`LinkState` from the IOC's ``P:Connected`` and
    ``P:LinkStatus``: an open port is ``connected`` (a failed poll shows in the values'
    INVALID alarm), a lost one that the IOC reopens ``reconnecting``, a port the IOC has
    not opened yet since it started (``connecting``) ``disconnected``."""
    if connected:
        return LinkState.CONNECTED
    if link_status == "connecting":
        return LinkState.DISCONNECTED
    return LinkState.RECONNECTING


def poll_rate_hz(poll_period: float) -> float:
    """Polls per second from the IOC's poll period (seconds)."""
    return 1.0 / poll_period if poll_period > 0 else 0.0


def is_remote_port(port: object) -> bool:
    """True for ``pva://PREFIX`` (an analyser served by ``ophyd-servomex ioc``)."""
    return isinstance(port, str) and port.startswith(REMOTE_SCHEMES)


def remote_prefix(port: str) -> str:
    """The bare PV prefix of ``pva://SMX1:`` (``SMX1:``), as ``fastcs_connector`` wants it."""
    for scheme in REMOTE_SCHEMES:
        if port.startswith(scheme):
            prefix = port[len(scheme) :]
            break
    else:
        raise ServomexConfigurationError(f"not an IOC address: {port!r} (use pva://PREFIX:)")
    if not prefix or "/" in prefix:
        raise ServomexConfigurationError(f"no PV prefix in {port!r} (use pva://PREFIX:)")
    return prefix if prefix.endswith(":") else prefix + ":"


class RemoteServomexAnalyser(StandardReadable):
    """An analyser behind an ``ophyd-servomex ioc`` process, read over PVA (see module doc).

    ``port`` is ``pva://PREFIX:``. ``channels`` limits the channels read into events
    (default: every channel the IOC serves). ``calibration_poll_period`` is how often a
    running calibration's phase is read. ``frame_timeout`` bounds how long ``trigger()``
    waits for the next frame (default: three poll periods plus 5 s).
    """

    fault: A[SignalR[bool], Format.UNCACHED_SIGNAL]
    maintenance: A[SignalR[bool], Format.UNCACHED_SIGNAL]
    cal_group1: A[SignalR[str], Format.UNCACHED_SIGNAL]
    cal_group2: A[SignalR[str], Format.UNCACHED_SIGNAL]
    cal_group3: A[SignalR[str], Format.UNCACHED_SIGNAL]
    cal_group4: A[SignalR[str], Format.UNCACHED_SIGNAL]
    clock: A[SignalR[str], Format.UNCACHED_SIGNAL]
    dropped_frames: A[SignalR[int], Format.UNCACHED_SIGNAL]
    protocol: A[SignalR[str], Format.CONFIG_SIGNAL]
    address: A[SignalR[int], Format.CONFIG_SIGNAL]
    status: SignalR[str]
    connected: SignalR[bool]
    link_status: SignalR[str]
    frames: SignalR[int]
    sequence: SignalR[int]
    poll_errors: SignalR[int]
    reconnects: SignalR[int]
    poll_period: SignalRW[float]
    cal_start: SignalW[int]
    cal_stop: SignalW[int]

    def __init__(
        self,
        port: str,
        *,
        channels: Sequence[ChannelId | str] | None = None,
        calibration_poll_period: float = 0.5,
        frame_timeout: float | None = None,
        name: str = "",
        **direct_only: Any,
    ) -> None:
        if direct_only:
            raise ServomexConfigurationError(
                f"{', '.join(sorted(direct_only))}: options of a direct connection; for "
                f"{port!r} the IOC owns the line (set them in 'ophyd-servomex ioc')"
            )
        self.port = port
        prefix = remote_prefix(port)
        self._prefix = prefix
        self._wanted = None if channels is None else tuple(ChannelId.parse(c) for c in channels)
        self._frame_timeout = frame_timeout
        self._channels: dict[ChannelId, Device] = {}
        self._registered = False
        self._subscriptions: dict[Callback[dict[str, BlueskyReading[Any]]], Any] = {}
        self.coherent_retries = 0
        """How often ``read()`` read again because the IOC posted a frame meanwhile."""
        self._context = ErrorContext(port=port)
        source = f"pva://{prefix}"
        self.calibration = ServomexCalibration(
            start=self._start_calibration,
            stop=self._stop_calibration,
            phase=self._phase,
            protocol=self._protocol_value,
            source=source,
            poll_period=calibration_poll_period,
            context=self._context,
        )
        super().__init__(name=name, connector=fastcs_connector(prefix))
        # the direct device's names, over the IOC's PVs (children that are not read)
        self.link_state = derived_signal_r(
            link_state, connected=self.connected, link_status=self.link_status
        )
        self.poll_rate_hz = derived_signal_rw(
            poll_rate_hz, self._set_poll_rate, derived_units="Hz", poll_period=self.poll_period
        )

    async def _set_poll_rate(self, value: float) -> None:
        if not math.isfinite(value) or value <= 0:
            raise ServomexValidationError(
                f"poll_rate_hz must be a finite number > 0, not {value!r}", context=self._context
            )
        await self.poll_period.set(1.0 / value)

    # --- connecting ------------------------------------------------------------------

    async def connect(
        self,
        mock: bool | DeviceMock[Any] = False,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - ophyd-async's signature
        force_reconnect: bool = False,
    ) -> None:
        """Fill the device from the IOC's PVI and register the channels it serves."""
        await super().connect(mock=mock, timeout=timeout, force_reconnect=force_reconnect)
        if not mock and not self._registered:
            served = self._served()
            names = {
                cid: await child.display_name.get_value()  # type: ignore[attr-defined]
                for cid, child in served.items()
            }
            self._register_channels(served, names)

    def _served(self) -> dict[ChannelId, Device]:
        served: dict[ChannelId, Device] = {}
        for name, child in self.children():
            try:
                cid = ChannelId.parse(name)
            except ValueError:
                continue
            served[cid] = child
        return served

    def _register_channels(
        self, served: dict[ChannelId, Device], names: dict[ChannelId, str]
    ) -> None:
        wanted = self._wanted if self._wanted is not None else tuple(served)
        missing = [c.value for c in wanted if c not in served]
        if missing:
            raise ServomexConfigurationError(
                f"{self.port} serves no channel {', '.join(missing)} "
                f"(it has {', '.join(c.value for c in served) or 'none'})",
                context=self._context,
            )
        order = {c: i for i, c in enumerate(ChannelId)}
        for cid in sorted(wanted, key=order.__getitem__):
            child = served[cid]
            hinted = bool(names[cid]) or cid.kind is not ChannelKind.EXTERNAL  # as is_hinted
            value_format = Format.HINTED_UNCACHED_SIGNAL if hinted else Format.UNCACHED_SIGNAL
            self.add_readables([child.value], value_format)  # type: ignore[attr-defined]
            self.add_readables([getattr(child, f) for f in _CHANNEL_READS], Format.UNCACHED_SIGNAL)
            self.add_readables([getattr(child, f) for f in _CHANNEL_CONFIG], Format.CONFIG_SIGNAL)
            self._channels[cid] = child
        self._registered = True

    @property
    def channel_ids(self) -> tuple[ChannelId, ...]:
        """The channels read into events, in the analyser's order."""
        return tuple(self._channels)

    def channel(self, channel: ChannelId | str) -> Device:
        """The child of one channel (its signals: ``value``, ``fault`` … ``unit``)."""
        return lookup_channel(self._channels, channel, owner=self.name, context=self._context)

    @property
    def context(self) -> ErrorContext:
        """The IOC address, as errors about this analyser report it."""
        return self._context

    # --- bluesky verbs -----------------------------------------------------------------

    async def describe(self) -> dict[str, DataKey]:
        """The data keys; each ``cal_groupN`` lists the phases as ``choices``, as the
        direct device's :class:`CalibrationPhase` does (the IOC serves them as text)."""
        keys = await super().describe()
        for group in (self.cal_group1, self.cal_group2, self.cal_group3, self.cal_group4):
            key = keys.get(group.name)
            if key is not None:
                key["choices"] = [phase.value for phase in CalibrationPhase]
        return keys

    async def read(self) -> dict[str, BlueskyReading[Any]]:
        """Every field from one frame: read again while the IOC posts a frame meanwhile
        (``P:Sequence`` odd, or not the same before and after)."""
        seen: list[tuple[int, int]] = []
        for _ in range(COHERENT_READ_TRIES):
            before = await self.sequence.get_value()
            if before % 2 == 0:
                reading = await super().read()
                after = await self.sequence.get_value()
                if after == before:
                    self.coherent_retries += len(seen)
                    return reading
                seen.append((before, after))
            else:
                seen.append((before, before))
                await asyncio.sleep(0.005)  # the IOC is posting a frame: a few ms
        raise ServomexTimeoutError(
            f"{self.port}: the IOC posted a frame during each of {COHERENT_READ_TRIES} "
            f"reads (sequence {seen[0][0]} … {seen[-1][1]}); a longer poll period helps",
            context=self._context,
        )

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        """Wait until the IOC has published a frame newer than the one current now."""
        start = await self.frames.get_value()
        timeout = self._frame_timeout
        if timeout is None:
            timeout = 3 * await self.poll_period.get_value() + 5.0
        try:
            await wait_for_value(self.frames, lambda n: n > start, timeout=timeout)
        except TimeoutError:
            link = await self.link_status.get_value()
            raise ServomexTimeoutError(
                f"no new frame from {self.port} within {timeout:g} s (IOC link: {link})",
                context=self._context,
            ) from None

    def subscribe(self, function: Callback[dict[str, BlueskyReading[Any]]]) -> None:
        """Call ``function`` with a full ``read()`` for every frame the IOC publishes
        (``bps.monitor(analyser)``); the current state is delivered at once."""
        if function in self._subscriptions:
            return
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()

        async def deliver() -> None:
            function(await self.read())

        def on_frame(_: dict[str, BlueskyReading[int]]) -> None:
            task = loop.create_task(deliver())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        self._subscriptions[function] = (on_frame, tasks)
        self.frames.subscribe_reading(on_frame)

    def clear_sub(self, function: Callback[dict[str, BlueskyReading[Any]]]) -> None:
        """Stop calling ``function``."""
        entry = self._subscriptions.pop(function, None)
        if entry is not None:
            on_frame, tasks = entry
            self.frames.clear_sub(on_frame)
            for task in tasks:
                task.cancel()

    def calibrate(
        self,
        group: int,
        *,
        confirm: bool = False,
        poll_period: float | None = None,
        timeout: float | None = None,
    ) -> WatchableAsyncStatus[int]:
        """Run autocalibration of ``group`` (1–4) through the IOC (it must allow it)."""
        return self.calibration.set(
            group, confirm=confirm, poll_period=poll_period, timeout=timeout
        )

    # --- what the calibration movable calls ----------------------------------------------

    async def _start_calibration(self, group: int, confirm: bool) -> None:
        if confirm is not True:  # the movable checked already; never write without it
            return
        await self.cal_start.set(group)

    async def _stop_calibration(self, confirm: bool) -> None:
        if confirm is not True:
            return
        await self.cal_stop.set(1)

    async def _phase(self, group: int) -> str:
        signal: SignalR[str] = getattr(self, f"cal_group{group}")
        return str(await signal.get_value())

    async def _protocol_value(self) -> str:
        return str(await self.protocol.get_value())

    def __repr__(self) -> str:
        return f"RemoteServomexAnalyser(name={self.name!r}, port={self.port!r})"
