"""``ServomexAnalyser``: one SERVOPRO 4000-series analyser as an ophyd-async device."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from bluesky.protocols import Reading as BlueskyReading
from ophyd_async.core import (
    AsyncStatus,
    Callback,
    Command,
    SignalR,
    SignalRW,
    StandardReadable,
    StandardReadableFormat,
    WatchableAsyncStatus,
    default_mock_class,
)

from ..codec.bench import BENCH_CHANNELS
from ..codec.errors import ErrorContext, ServomexConfigurationError
from ..codec.models import ChannelId, ChannelInfo, ProtocolKind, SerialSettings, Unit
from ..codec.options import DEFAULT_INTER_FRAME_IDLE, ConnectionOptions, parse_protocol
from .analyser_session import SessionFactory, device_session_factory
from .backends import SessionCommandBackend, SettingBackend, StateBackend, run_in_task
from .calibration import ServomexCalibration
from .channel import ServomexChannel
from .channel_lookup import lookup_channel
from .connect_cache import forget_connect
from .connector import ServomexConnector
from .frames import FrameSnapshot
from .link import ALARM_INVALID, LinkState, ReconnectPolicy
from .mock import ServomexAnalyserMock
from .monitor import DeviceMonitor
from .signals import CalibrationPhase, FrameSignalR, frame_signal

if TYPE_CHECKING:
    from .bus import ServomexBus

_LOGGER = logging.getLogger(__name__)

__all__ = ["ChannelSpec", "ServomexAnalyser"]

type ChannelSpec = ChannelInfo | ChannelId | str
"""A declared channel: full info (mock mode uses its name and unit) or just an id."""


def _declared(channels: Sequence[ChannelSpec] | None) -> tuple[ChannelInfo, ...] | None:
    if channels is None:
        return None
    bench = {c.channel: c for c in BENCH_CHANNELS}
    out: list[ChannelInfo] = []
    for spec in channels:
        if isinstance(spec, ChannelInfo):
            out.append(spec)
            continue
        cid = ChannelId.parse(spec)
        out.append(bench.get(cid, ChannelInfo(cid, None, Unit.UNKNOWN)))
    ids = [c.channel for c in out]
    if len(set(ids)) != len(ids):
        raise ServomexConfigurationError(
            f"channels declared twice: {', '.join(c.value for c in ids)}"
        )
    return tuple(out)


def _clock_text(snapshot: FrameSnapshot) -> str:
    status = snapshot.frame.analyser
    if status.clock is not None:
        return status.clock.isoformat(sep=" ")
    return status.clock_text or ""


@default_mock_class(ServomexAnalyserMock)
class ServomexAnalyser(StandardReadable):
    """A Servomex SERVOPRO 4000-series analyser (Modbus RTU/ASCII or continuous ASCII).

    ``port`` is a serial device, ``socket://host:port`` or ``rfc2217://host:port``;
    ``protocol`` defaults to AUTO (probe Modbus RTU, ASCII, then listen for the
    broadcast); ``address`` is the Modbus slave address (the bench unit uses 30). With
    ``bus=`` the analyser shares a :class:`ServomexBus` (RS485 multidrop, Modbus only)
    instead of opening the port itself. ``channels`` declares the channel set: mock mode
    builds it (default: the bench's I1 Oxygen %, I2 CO %, I3 CO₂ %, E1, E2 mA) and a real
    connection checks the analyser reports it; without it every populated channel plus
    E1/E2 found at connect becomes a child named after its id (``analyser.i1``).

    ``timeout`` is the driver's per-request timeout, ``expected_period`` the operator's
    broadcast period (AUTO's listen window and the continuous ``trigger()`` wait derive
    from it), ``inter_frame_idle`` the Modbus line silence before each request (driver
    default 50 ms, which the real unit needs; a zero-latency simulator can take less).

    ``session_factory`` replaces all of that with a callable opening any session shaped
    like the driver's ``Analyzer`` (see :mod:`ophyd_servomex.devices.analyser_session`).

    ``trigger()`` takes one fresh frame (Modbus: a sweep; continuous: the next broadcast)
    and ``read()`` reports exactly that frame, every field with its timestamp. Signals
    and the device itself can be monitored (``bps.monitor``); in Modbus mode a background
    poll at ``poll_rate_hz`` runs while anything is subscribed. The rate is also a settable
    signal, ``analyser.poll_rate_hz`` (``bps.mv(analyser.poll_rate_hz, 5)``), which a
    running poll follows at its next tick.

    **A lost link** (pulled cable, unplugged USB adapter, a serial server gone) releases
    the port at once; ``link_state`` turns to ``reconnecting`` (alarm severity INVALID),
    reads and triggers fail fast with a :class:`ServomexConnectionError` naming the port,
    and subscribers get the last values again with severity INVALID. The device reopens
    the port by itself on the ``reconnect`` schedule (:class:`ReconnectPolicy`: 0.5 s
    doubling to 5 s; ``None`` turns it off), so the next plan after the port is back needs
    no manual step. ``calibrate(group,
    confirm=True)`` (or ``bps.abs_set(analyser.calibration, group, confirm=True)``)
    runs an autocalibration with progress.

    Read fields, all from one frame with its timestamp: per channel ``<name>-<id>-value``
    (hinted, with units, precision and alarm severity; an unlabelled E1/E2 is not hinted)
    and ``<name>-<id>-status`` (every flag in one string, ``"ok"`` or e.g. ``"fault A1"``;
    see :class:`ServomexChannel`); for the analyser ``fault``, ``maintenance``,
    ``cal_group1``…``cal_group4`` (a :class:`CalibrationPhase`, whose ``choices`` the
    data key lists), ``clock`` and ``dropped_frames``. The bench unit's five channels make
    18 fields. Configuration: ``protocol``, ``address`` (0 in continuous mode, which has
    none) and each channel's ``display_name`` and ``unit``. Not read, but readable and
    subscribable: each channel's single flags (``analyser.i1.fault`` …),
    ``link_state`` (:class:`LinkState`) and ``poll_rate_hz``.
    """

    _connector: ServomexConnector

    # --- an analyser served by 'ophyd-servomex ioc' (devices/remote.py) ----------------
    def __new__(cls, port: str = "", *args: Any, **kwargs: Any) -> Any:
        """``ServomexAnalyser("pva://PREFIX:")`` is the analyser an ``ophyd-servomex ioc``
        serves, read through PVI: a :class:`~.remote.RemoteServomexAnalyser`."""
        from .remote import RemoteServomexAnalyser, is_remote_port

        if cls is ServomexAnalyser and is_remote_port(port):
            return RemoteServomexAnalyser(port, *args, **kwargs)
        return super().__new__(cls)  # type: ignore[no-untyped-call]

    def __init__(
        self,
        port: str = "",
        *,
        protocol: ProtocolKind | str = ProtocolKind.AUTO,
        address: int = 1,
        serial_settings: SerialSettings | None = None,
        bus: ServomexBus | None = None,
        channels: Sequence[ChannelSpec] | None = None,
        poll_rate_hz: float = 2.0,
        timeout: float = 1.0,
        expected_period: float = 2.0,
        calibration_poll_period: float = 0.5,
        inter_frame_idle: float | None = None,
        session_factory: SessionFactory | None = None,
        reconnect: ReconnectPolicy | None = ReconnectPolicy(),  # noqa: B008 (frozen)
        name: str = "",
    ) -> None:
        where = port or (bus.port if bus is not None else "")
        kind = parse_protocol(protocol, context=ErrorContext(port=where or None))
        options = ConnectionOptions(  # checks every connection argument, in every mode
            where,
            protocol=kind,
            address=address,
            serial_settings=serial_settings,
            timeout=timeout,
            inter_frame_idle=(
                DEFAULT_INTER_FRAME_IDLE if inter_frame_idle is None else inter_frame_idle
            ),
            expected_period=expected_period,
        )
        declared = _declared(channels)
        open_session: SessionFactory | None
        before: Callable[[float], Awaitable[None]] | None = None
        if session_factory is not None:
            open_session = session_factory
        elif bus is not None:
            if port and port != bus.port:
                raise ServomexConfigurationError(
                    f"port {port!r} differs from the bus's port {bus.port!r}"
                )
            port = bus.port
            open_session = bus.session_factory(self, address=address, protocol=kind)
            before = bus.ensure_connected
        elif port:
            open_session = device_session_factory(options)
        else:
            open_session = None
        connector = ServomexConnector(
            open_session=open_session,
            port=port,
            protocol=kind,
            address=address,
            declared=declared,
            poll_rate_hz=poll_rate_hz,
            expected_period=expected_period,
            before_connect=before,
            reconnect=reconnect,
            build_channels=self._add_channels,
        )
        connector.bus = bus  # not an attribute of the device: it would become a child
        connector.device_label = self._label
        self._hub = hub = connector.frames
        self._source = source = f"servomex://{port or 'mock'}?address={address}"
        ctx = ErrorContext(port=port or None, protocol=kind.value, address=address)
        self._channels: dict[ChannelId, ServomexChannel] = {}
        self._rendered_reads: object = None
        self._monitor = DeviceMonitor(hub, lambda: connector.mock_mode)

        with self.add_children_as_readables(StandardReadableFormat.UNCACHED_SIGNAL):
            self.fault = frame_signal(
                bool, hub, lambda s: s.frame.analyser.fault,
                source=f"{source}#fault", default=False, context=ctx,
            )  # fmt: skip
            self.maintenance = frame_signal(
                bool, hub, lambda s: s.frame.analyser.maintenance,
                source=f"{source}#maintenance", default=False, context=ctx,
            )  # fmt: skip
            self.cal_group1 = self._group_signal(1, ctx)
            self.cal_group2 = self._group_signal(2, ctx)
            self.cal_group3 = self._group_signal(3, ctx)
            self.cal_group4 = self._group_signal(4, ctx)
            self.clock = frame_signal(
                str, hub, _clock_text, source=f"{source}#clock", default="", context=ctx
            )
            self.dropped_frames = frame_signal(
                int, hub, lambda s: s.dropped_frames,
                source=f"{source}#dropped_frames", default=0, context=ctx,
            )  # fmt: skip
        self._monitor.add(
            self.fault,
            self.maintenance,
            self.cal_group1,
            self.cal_group2,
            self.cal_group3,
            self.cal_group4,
            self.clock,
            self.dropped_frames,
        )
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.protocol = frame_signal(
                str, hub, lambda s: s.frame.protocol.value,
                source=f"{source}#protocol", default=kind.value, context=ctx,
            )  # fmt: skip
            self.address = frame_signal(
                int, hub, lambda s: s.frame.address if s.frame.address is not None else 0,
                source=f"{source}#address", default=address, context=ctx,
            )  # fmt: skip
        link = StateBackend(
            LinkState,
            LinkState.DISCONNECTED,
            source=f"{source}#link_state",
            severity=ALARM_INVALID,
            context=ctx,
        )
        self.link_state = SignalR(link)
        connector.on_link_change = lambda state, severity: link.update(state, severity=severity)
        self.poll_rate_hz = SignalRW(
            SettingBackend(
                float,
                connector.poll_rate_hz,
                connector.set_poll_rate,
                source=f"{source}#poll_rate_hz",
                units="Hz",
                precision=3,
            )
        )
        self.refresh = Command(
            SessionCommandBackend(connector.refresh, source=f"{source}#poll"), timeout=None
        )
        self.calibration = ServomexCalibration(
            start=connector.start_calibration,
            stop=connector.stop_calibration,
            phase=connector.calibration_phase,
            protocol=self.protocol.get_value,
            source=source,
            poll_period=calibration_poll_period,
            context=ctx,
        )
        super().__init__(name=name, connector=connector)

    def _group_signal(self, group: int, ctx: ErrorContext) -> FrameSignalR[CalibrationPhase]:
        return frame_signal(
            CalibrationPhase,
            self._hub,
            lambda s: CalibrationPhase(s.frame.analyser.cal_groups[group - 1].phase.value),
            source=f"{self._source}#cal_group{group}",
            default=CalibrationPhase.IDLE,
            context=ctx,
        )

    def _label(self) -> str:
        return self.name or "the analyser"

    # --- channels ----------------------------------------------------------------------

    def _add_channels(self, channels: Sequence[ChannelInfo]) -> None:
        """Build and register one child per channel (the connector calls it once, at the
        first connect: it is handed over as ``build_channels``, so the connector needs
        nothing of this module)."""
        for info in channels:
            child = ServomexChannel(
                info, self._hub, source=self._source, context=self._connector.context
            )
            setattr(self, info.channel.value.lower(), child)
            self.add_readables([child], StandardReadableFormat.CHILD)
            self._channels[info.channel] = child
            self._monitor.add(*child.read_signals)
        self._rendered_reads = self._read_funcs  # what read() can render in one step

    @property
    def channel_ids(self) -> tuple[ChannelId, ...]:
        """The channels built at connect, in the analyser's order."""
        return tuple(self._channels)

    def channel(self, channel: ChannelId | str) -> ServomexChannel:
        """The child of one channel (``"I1"``, ``"i1"`` or ``ChannelId.I1``)."""
        return lookup_channel(
            self._channels, channel, owner=self.name, context=self._connector.context
        )

    # --- bluesky verbs -----------------------------------------------------------------

    @AsyncStatus.wrap
    async def stage(self) -> None:
        """Start a fresh acquisition: forget any earlier trigger."""
        self._hub.clear_trigger()
        await super().stage()

    @AsyncStatus.wrap
    async def unstage(self) -> None:
        """End the acquisition: reads report the latest frame again."""
        self._hub.clear_trigger()
        await super().unstage()

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        """Take one fresh frame: one Modbus sweep, or the next continuous broadcast."""
        await run_in_task(self.refresh)

    async def read(self) -> dict[str, BlueskyReading[Any]]:
        """Every field from one frame (the triggered one, else the latest).

        Connected for real, the fields are rendered from that one snapshot in one step
        (what a ``StandardReadable`` read would give, without a task per signal); in mock
        mode, or when readables were added after the channels, the signals are read as
        usual, all pinned to the snapshot.
        """
        with self._hub.pinned() as snapshot:
            if self._read_funcs is self._rendered_reads and not self._connector.mock_mode:
                if snapshot is None:
                    raise self._hub.unavailable()
                return self._monitor.render(snapshot)
            return await super().read()

    async def read_configuration(self) -> dict[str, BlueskyReading[Any]]:
        """Protocol, address and each channel's name and unit, from one frame."""
        with self._hub.pinned():
            return await super().read_configuration()

    def subscribe(self, function: Callback[dict[str, BlueskyReading[Any]]]) -> None:
        """Call ``function`` with a full ``read()``-shaped dict for every frame.

        This makes the whole analyser monitorable (``bps.monitor(analyser)``): one event
        per broadcast frame or background poll, all fields sharing the frame's timestamp.
        The current frame is delivered at once.
        """
        self._monitor.subscribe(function)

    def clear_sub(self, function: Callback[dict[str, BlueskyReading[Any]]]) -> None:
        """Stop calling ``function``."""
        self._monitor.clear_sub(function)

    def calibrate(
        self,
        group: int,
        *,
        confirm: bool = False,
        poll_period: float | None = None,
        timeout: float | None = None,
        gas_time: float | None = None,
    ) -> WatchableAsyncStatus[int]:
        """Run autocalibration of ``group`` (1–4); see :class:`ServomexCalibration`."""
        return self.calibration.set(
            group, confirm=confirm, poll_period=poll_period, timeout=timeout, gas_time=gas_time
        )

    async def disconnect(self) -> None:
        """Close the driver session (the port, or this analyser's place on its bus).

        A calibration started here and still running is stopped first (the stop pulse goes
        out while the session can still send it), so disconnecting never leaves gas flowing.
        A later ``connect()`` opens a new session (the channel set must not change).
        """
        if self.calibration.running:
            try:
                await self.calibration.stop()
            except Exception:  # the link may be gone already: still let go of the port
                _LOGGER.exception("%s: stopping the calibration on disconnect failed", self.name)
        await self._connector.disconnect()
        forget_connect(self)  # so the next connect() is not served from the cache

    @property
    def context(self) -> ErrorContext:
        """Port, protocol and address, as errors about this analyser report them."""
        return self._connector.context

    @property
    def bus(self) -> ServomexBus | None:
        """The shared RS485 bus this analyser is on, if any."""
        bus: ServomexBus | None = self._connector.bus
        return bus

    @property
    def connected(self) -> bool:
        """True while a real session is open."""
        return self._connector.connected

    @property
    def link(self) -> LinkState:
        """What the link is doing now (the value of ``link_state``, without awaiting)."""
        return self._connector.link

    @property
    def hub_sequence(self) -> int:
        """How many frames the device has seen (for tests and diagnostics)."""
        return self._hub.sequence

    def __repr__(self) -> str:
        connector = self.__dict__.get("_connector")
        port = connector.port if isinstance(connector, ServomexConnector) else ""
        return f"ServomexAnalyser(name={self.name!r}, port={port!r})"
