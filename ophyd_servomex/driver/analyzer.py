"""``open_device``, ``open_continuous`` and ``Analyzer``: one analyser, any mode, one API.

::

    async with await open_device("/dev/ttyUSB0", address=30) as analyser:
        frame = await analyser.poll()
        print(frame.channel("I1").value, analyser.protocol)

``open_device`` is a coroutine function returning an :class:`Analyzer` that is not open
yet; ``Analyzer`` is an async context manager. Entering it opens the port (unless a
:class:`Transport` or a shared :class:`ModbusLine` was given), starts the port's I/O owner,
runs AUTO detection when asked, starts the continuous receive loop or the Modbus line, and
(by default) identifies the channels. Enter and leave it in the same task: its task
groups live there (ophyd-async devices do this from a dedicated owner task).

**Gates.** Methods that act on the process or need a capability check, in this order and
before any byte is sent: *safety* (``confirm`` must be exactly ``True`` for calibration, else
:class:`ServomexConfirmationRequiredError`) → *capability* (continuous mode cannot calibrate
or loop back: :class:`ServomexProtocolUnsupportedError`, a :class:`ServomexCapabilityError`)
→ *validation* (group 1–4, a known channel, two loopback bytes:
:class:`ServomexValidationError`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Self, cast

import anyio.abc
import anyio.lowlevel

from ..codec.checks import check_group
from ..codec.errors import (
    ErrorContext,
    ServomexConfirmationRequiredError,
    ServomexConnectionError,
    ServomexError,
    ServomexProtocolUnsupportedError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ..codec.models import (
    AnalyserStatus,
    Availability,
    CalGroupState,
    Capability,
    ChannelId,
    ChannelInfo,
    ChannelStatus,
    DeviceInfo,
    Frame,
    ProtocolKind,
    Reading,
    Sample,
    SerialSettings,
    StreamMode,
    capabilities,
    capability_set,
)
from ..codec.options import (
    DEFAULT_EXPECTED_PERIOD,
    DEFAULT_INTER_FRAME_IDLE,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ConnectionOptions,
    parse_protocol,
)
from ..transport import Transport, open_transport
from .auto import (
    DEFAULT_LISTEN_FLOOR,
    DEFAULT_PROBE_TIMEOUT,
    DetectionResult,
    detect_protocol,
)
from .continuous import ContinuousClient
from .hub import FrameHub, Subscription
from .modbus import ModbusClient, ModbusLine
from .owner import PortOwner
from .session import StreamingSession

__all__ = ["Analyzer", "open_continuous", "open_device"]

_LOGGER = logging.getLogger(__name__)


def _port_name(port: object) -> str:
    """The port string of what an Analyzer talks through, or a validation error."""
    if isinstance(port, str):
        return port
    if isinstance(port, ModbusLine):
        return port.port
    if isinstance(port, anyio.abc.ByteStream):
        return str(getattr(port, "port", "") or "")
    raise ServomexValidationError(
        f"port must be a port string, an open Transport or a ModbusLine, not {port!r}"
    )


class Analyzer:
    """One connected Servomex analyser; create it with :func:`open_device`.

    Attributes that need no I/O: :attr:`protocol` (the mode in use, resolved by AUTO),
    :attr:`address`, :attr:`port`, :attr:`name`, :attr:`info` (cached by
    :meth:`identify`), :attr:`capabilities`, :attr:`dropped_frames`, :meth:`snapshot`,
    and :attr:`options`: the keyword arguments, checked once, as one frozen
    :class:`~ophyd_servomex.codec.options.ConnectionOptions`.
    """

    def __init__(
        self,
        port: str | Transport | ModbusLine,
        *,
        protocol: ProtocolKind | str = ProtocolKind.AUTO,
        address: int = 1,
        serial_settings: SerialSettings | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        identify: bool = True,
        expected_period: float = DEFAULT_EXPECTED_PERIOD,
        name: str | None = None,
        inter_frame_idle: float = DEFAULT_INTER_FRAME_IDLE,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        port_name = _port_name(port)
        options = ConnectionOptions(
            port_name,
            protocol=parse_protocol(protocol, context=ErrorContext(port=port_name or None)),
            address=address,
            serial_settings=serial_settings,
            timeout=timeout,
            inter_frame_idle=inter_frame_idle,
            retries=retries,
            identify=identify,
            expected_period=expected_period,
        )
        self._setup(port, options, name)

    @classmethod
    def from_options(
        cls,
        options: ConnectionOptions,
        *,
        source: Transport | ModbusLine | None = None,
        name: str | None = None,
    ) -> Analyzer:
        """An Analyzer for ``options`` (checked when they were built), not opened yet.

        ``source`` is an open :class:`Transport` or a shared :class:`ModbusLine` to use
        instead of opening ``options.port``; ``name`` is the name samples carry (default:
        the port). The keyword arguments of ``Analyzer(...)`` build the same options.
        """
        if not isinstance(options, ConnectionOptions):
            raise ServomexValidationError(f"options must be a ConnectionOptions, not {options!r}")
        analyzer = cls.__new__(cls)
        analyzer._setup(options.port if source is None else source, options, name)
        return analyzer

    def _setup(
        self,
        source: str | Transport | ModbusLine,
        options: ConnectionOptions,
        name: str | None,
    ) -> None:
        source_name = _port_name(source)  # refuses a source of the wrong type
        port_name = options.port or source_name
        if isinstance(source, ModbusLine):
            if options.protocol is ProtocolKind.AUTO:
                options = replace(options, protocol=source.protocol)
            if options.protocol is not source.protocol:
                raise ServomexValidationError(
                    f"a shared {source.protocol.value} line cannot be used as "
                    f"{options.protocol.value}",
                    context=ErrorContext(port=port_name or None, address=options.address),
                )
        self._source = source
        self._options = options
        self._port = port_name
        self._name = name or port_name or "servomex"
        self._protocol: ProtocolKind = options.protocol
        self._stack: AsyncExitStack | None = None
        self._hub = FrameHub()
        self._transport: anyio.abc.ByteStream | None = None
        self._continuous: ContinuousClient | None = None
        self._modbus: ModbusClient | None = None
        self._info: DeviceInfo | None = None
        self._detection: DetectionResult | None = None
        self._failed_polls = 0
        self._open = False

    # --- identity and state ---------------------------------------------------------------

    @property
    def options(self) -> ConnectionOptions:
        """The connection options this Analyzer was built with (``protocol`` as requested)."""
        return self._options

    @property
    def timeout(self) -> float:
        """Default per-call and first-frame timeout, in seconds."""
        return self._options.timeout

    @property
    def expected_period(self) -> float:
        """Seconds between two continuous-mode broadcasts."""
        return self._options.expected_period

    @property
    def inter_frame_idle(self) -> float:
        """Line silence before each Modbus request, in seconds."""
        return self._options.inter_frame_idle

    @property
    def retries(self) -> int:
        """Extra attempts of a Modbus read on the line this Analyzer opens."""
        return self._options.retries

    @property
    def protocol(self) -> ProtocolKind:
        """The mode in use (``AUTO`` only before opening)."""
        return self._protocol

    @property
    def address(self) -> int | None:
        """The Modbus slave address (``None`` in continuous mode, which has none)."""
        return None if self._protocol is ProtocolKind.CONTINUOUS_ASCII else self._options.address

    @property
    def port(self) -> str:
        """The port string."""
        return self._port

    @property
    def name(self) -> str:
        """The name samples carry (``name=`` or the port)."""
        return self._name

    @property
    def info(self) -> DeviceInfo | None:
        """What :meth:`identify` learnt, or ``None`` before it ran."""
        return self._info

    @property
    def detection(self) -> DetectionResult | None:
        """What AUTO detection tried and found (``None`` when a protocol was given)."""
        return self._detection

    @property
    def capabilities(self) -> Capability:
        """What this analyser can do in its current mode, as a :class:`Capability` set.

        Continuous mode: ``READ | STREAM | IDENTIFY``; Modbus: ``Capability.ALL``; before
        AUTO has resolved the mode: none.
        """
        return capability_set(self._protocol)

    def availability(self, capability: Capability) -> Availability:
        """Whether one capability is available, unsupported, or not known yet (AUTO)."""
        return capabilities(self._protocol)[capability]

    @property
    def dropped_frames(self) -> int:
        """Continuous: bad lines skipped. Modbus: polls that failed after their retries."""
        if self._continuous is not None:
            return self._continuous.dropped_frames
        return self._failed_polls

    @property
    def is_open(self) -> bool:
        """True between entering and leaving the context."""
        return self._open

    @property
    def modbus(self) -> ModbusClient | None:
        """The Modbus client (Modbus modes only; for diagnostics and the manager)."""
        return self._modbus

    @property
    def hub(self) -> FrameHub:
        """The frame hub every frame (and failed poll) of this analyser is published to:
        the latest-frame cache, :meth:`subscribe`'s subscriptions and the synchronous
        listeners the ophyd-async devices use. Read-only; closed when the link ends."""
        return self._hub

    def snapshot(self) -> Frame | None:
        """The latest frame received or polled, without any I/O."""
        return self._hub.latest

    def __repr__(self) -> str:
        return (
            f"Analyzer(port={self._port!r}, protocol={self._protocol.value!r}, "
            f"address={self.address!r}, open={self._open})"
        )

    # --- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise ServomexConnectionError(
                "this Analyzer was already opened; call open_device() again",
                context=self._context(),
            )
        stack = AsyncExitStack()
        self._stack = stack
        try:
            await self._open_with(stack)
        except BaseException:
            self._open = False
            self._hub.close()
            await stack.aclose()
            raise
        return self

    async def _open_with(self, stack: AsyncExitStack) -> None:
        source = self._source
        options = self._options
        if isinstance(source, ModbusLine):
            self._transport = source.transport
            self._modbus = ModbusClient(source, options.address)
        else:
            if isinstance(source, str):
                transport: anyio.abc.ByteStream = await open_transport(
                    source, options.serial_settings
                )
                stack.push_async_callback(transport.aclose)
            else:
                transport = cast("anyio.abc.ByteStream", source)  # checked by _port_name
            self._transport = transport
            owner = await stack.enter_async_context(
                PortOwner(port=self._port, protocol=options.protocol.value)
            )
            protocol = options.protocol
            if protocol is ProtocolKind.AUTO:
                self._detection = await detect_protocol(
                    transport,
                    owner,
                    address=options.address,
                    expected_period=self.expected_period,
                    listen_floor=max(self.timeout, DEFAULT_LISTEN_FLOOR),
                    probe_timeout=min(self.timeout, DEFAULT_PROBE_TIMEOUT),
                    inter_frame_idle=self.inter_frame_idle,
                    port=self._port,
                )
                protocol = self._detection.protocol
            self._protocol = protocol
            if protocol is ProtocolKind.CONTINUOUS_ASCII:
                detection = self._detection
                self._continuous = await stack.enter_async_context(
                    ContinuousClient(
                        transport,
                        self._hub,
                        port=self._port,
                        timeout=self.timeout + self.expected_period,
                        decoder=detection.decoder if detection else None,
                        initial=detection.frames if detection else (),
                    )
                )
            else:
                line = await stack.enter_async_context(
                    ModbusLine(
                        transport,
                        protocol=protocol,
                        timeout=self.timeout,
                        retries=self.retries,
                        inter_frame_idle=self.inter_frame_idle,
                        owner=owner,
                        port=self._port,
                    )
                )
                self._modbus = ModbusClient(line, options.address)
        if self._modbus is not None:
            self._protocol = self._modbus.protocol
        self._open = True
        if options.identify:
            await self.identify()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the receive loop or Modbus line, close the port if this Analyzer opened it.

        Call it from the task that entered the Analyzer.
        """
        self._open = False
        self._hub.close()
        if self._stack is not None:
            await self._stack.aclose()

    # --- helpers --------------------------------------------------------------------------

    def _context(self, **fields: object) -> ErrorContext:
        return ErrorContext(
            port=self._port or None,
            protocol=self._protocol.value,
            address=self.address,
        ).merged(**fields)

    def _require_open(self) -> None:
        lost = self._continuous.lost if self._continuous is not None else None
        if lost is not None:
            raise lost
        if not self._open:
            raise ServomexConnectionError(
                "the analyser is not open (use 'async with open_device(...)')",
                context=self._context(),
            )

    def _require_modbus(self, what: str) -> ModbusClient:
        if self._modbus is None:
            raise ServomexProtocolUnsupportedError(
                f"{what} needs a Modbus mode; the analyser is in {self._protocol.value} mode, "
                "which only broadcasts (change the mode on the front panel)",
                context=self._context(),
            )
        return self._modbus

    def _channel(self, channel: str | ChannelId) -> ChannelId:
        try:
            cid = ChannelId.parse(channel)
        except ServomexValidationError as exc:
            raise exc.with_context(
                port=self._port or None, protocol=self._protocol.value, address=self.address
            ) from None
        info = self._info
        if (
            self._protocol is ProtocolKind.CONTINUOUS_ASCII
            and info is not None
            and cid not in {c.channel for c in info.channels}
        ):
            raise ServomexValidationError(
                f"channel {cid.value} is not among this analyser's channels "
                f"({', '.join(c.channel.value for c in info.channels)})",
                context=self._context(channel=cid.value),
            )
        return cid

    def _group(self, group: int) -> int:
        return check_group(group, context=self._context())

    def _link_lost(self, error: ServomexConnectionError) -> None:
        self._hub.close(error)

    # --- reading --------------------------------------------------------------------------

    async def poll(self, *, wait_fresh: bool = True, max_wait: float | None = None) -> Frame:
        """One coherent frame of every channel.

        Modbus: one sweep (three reads, or the remembered gap-free plan). Continuous: the
        next broadcast frame (``wait_fresh``), or the latest one if there is any; waits at
        most ``max_wait`` s (default: the open timeout plus ``expected_period``). Every frame
        also goes to subscribers and becomes :meth:`snapshot`.
        """
        self._require_open()
        if self._continuous is not None:
            return await self._continuous.poll(wait_fresh=wait_fresh, max_wait=max_wait)
        modbus = self._require_modbus("poll")
        try:
            # published from the owner task: a cancelled caller does not lose the frame
            return await modbus.sweep(publish=self._hub.publish)
        except ServomexConnectionError as exc:
            self._failed_polls += 1
            self._link_lost(exc)
            raise
        except ServomexError as exc:
            self._failed_polls += 1
            self._hub.publish(exc)
            raise

    async def poll_samples(
        self,
        names: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the page's PollSource signature)
    ) -> list[Sample]:
        """One poll fanned out into long-format samples, one per channel (a PollSource).

        ``names`` is ignored for a single analyser (it selects devices of a manager).
        ``timeout`` bounds the poll (default: the analyser's own timeouts). A failed poll
        is one error :class:`Sample` (``reading`` and ``channel`` ``None``); a lost link
        (:class:`ServomexConnectionError`) is raised, not sampled.
        """
        del names
        polled = self._protocol.is_modbus
        requested_at = datetime.now(UTC) if polled else None
        started = time.perf_counter()
        try:
            if timeout is None:
                frame = await self.poll()
            else:
                with anyio.fail_after(timeout):
                    frame = await self.poll()
        except ServomexConnectionError:
            raise
        except TimeoutError as exc:
            error = exc if isinstance(exc, ServomexError) else self._poll_timeout(timeout)
            return [Sample.failed(self._name, error, self._protocol, requested_at=requested_at)]
        except ServomexError as exc:
            return [Sample.failed(self._name, exc, self._protocol, requested_at=requested_at)]
        latency = time.perf_counter() - started if polled else None
        return frame.as_samples(self._name, requested_at=requested_at, latency_s=latency)

    def _poll_timeout(self, timeout: float | None) -> ServomexTimeoutError:
        return ServomexTimeoutError(
            f"the poll took longer than {timeout} s", context=self._context(elapsed_s=timeout)
        )

    async def read_all(self) -> dict[ChannelId, Reading]:
        """Every channel of one fresh frame, by channel id."""
        frame = await self.poll()
        return {r.channel: r for r in frame.readings}

    async def read_channel(self, channel: str | ChannelId) -> Reading:
        """One channel's reading (Modbus: its own two reads; continuous: the next frame)."""
        self._require_open()
        cid = self._channel(channel)
        if self._modbus is not None:
            return await self._modbus_call(self._modbus.read_channel(cid), cid)
        frame = await self.poll()
        return frame.channel(cid)

    async def status(self, channel: str | ChannelId) -> ChannelStatus:
        """One channel's status flags (Modbus: its eight discretes; continuous: next frame)."""
        self._require_open()
        cid = self._channel(channel)
        if self._modbus is not None:
            return await self._modbus_call(self._modbus.channel_status(cid), cid)
        frame = await self.poll()
        return frame.channel(cid).status

    async def analyser_status(self) -> AnalyserStatus:
        """Analyser fault, maintenance and autocal groups."""
        self._require_open()
        if self._modbus is not None:
            return await self._modbus_call(self._modbus.analyser_status())
        frame = await self.poll()
        return frame.analyser

    async def calibration_status(self, group: int) -> CalGroupState:
        """The state of autocal group 1–4."""
        self._require_open()
        g = self._group(group)
        if self._modbus is not None:
            return await self._modbus_call(self._modbus.calibration_status(g))
        frame = await self.poll()
        return frame.analyser.group(g)

    async def identify(self) -> DeviceInfo:
        """The channels' names and units (cached in :attr:`info`).

        Modbus: one FC04 read of the register map. Continuous: the latest (or next) frame.
        """
        self._require_open()
        if self._modbus is not None:
            info = await self._modbus_call(self._modbus.identify())
        else:
            assert self._continuous is not None
            frame = await self._continuous.poll(wait_fresh=False)
            info = DeviceInfo(
                port=self._port,
                protocol=self._protocol,
                address=None,
                channels=tuple(
                    ChannelInfo(r.channel, r.name, r.unit, r.unit_text) for r in frame.readings
                ),
            )
        self._info = info
        return info

    async def _modbus_call[T](self, call: Awaitable[T], channel: ChannelId | None = None) -> T:
        try:
            return await call
        except ServomexError as exc:
            if isinstance(exc, ServomexConnectionError):
                self._link_lost(exc)
            if channel is None:
                raise
            raise exc.with_context(channel=channel.value) from exc

    # --- subscribing and streaming --------------------------------------------------------

    def subscribe(self, *, buffer_size: int | None = None) -> Subscription:
        """Every frame from now on: each broadcast (continuous) or each poll's (Modbus).

        A subscriber that falls ``buffer_size`` frames behind loses the oldest ones (see
        :mod:`ophyd_servomex.driver.hub`). When the link is lost, iteration raises the
        :class:`ServomexConnectionError` after the frames already received.
        """
        return self._hub.subscribe(buffer_size=buffer_size)

    def stream(
        self,
        rate_hz: float | None = None,
        *,
        mode: StreamMode | str | None = None,
        count: int | None = None,
        duration: float | None = None,
        buffer_size: int | None = None,
    ) -> StreamingSession:
        """Stream samples: ``AUTOPRINT`` (continuous) or ``POLL`` (Modbus).

        The mode defaults per protocol. Continuous mode listens to the broadcast
        (``rate_hz`` is ignored: the analyser sets the cadence); Modbus mode polls on
        :func:`~ophyd_servomex.driver.record`'s drift-free schedule at ``rate_hz``
        (default 1.0) in a task group the session owns, so use it as a context manager::

            async with analyser.stream(rate_hz=2) as samples:
                async for sample in samples:
                    print(sample.channel, sample.value)

        Stops after ``count`` samples or ``duration`` seconds when either is given.
        """
        self._require_open()
        chosen = StreamingSession.mode_for(self._protocol, mode, context=self._context())
        return StreamingSession(
            self,
            mode=chosen,
            rate_hz=rate_hz,
            count=count,
            duration=duration,
            buffer_size=buffer_size,
        )

    # --- calibration and diagnostics (gated) ----------------------------------------------

    async def start_calibration(self, group: int, *, confirm: bool = False) -> None:
        """Start autocal group 1–4: pulse its coil (FC05 on, FC01 read back, FC05 off).

        Process-affecting (:attr:`SafetyTier.STATEFUL`): the analyser injects calibration
        gas. Needs ``confirm=True`` — exactly ``True``: a truthy string, number or
        container is refused before any byte is sent. Modbus only.
        """
        if confirm is not True:
            raise ServomexConfirmationRequiredError(
                f"starting calibration group {group!r} injects calibration gas; "
                "pass confirm=True to do it",
                context=self._context(),
            )
        modbus = self._require_modbus("starting a calibration")
        g = self._group(group)
        self._require_open()
        await self._modbus_call(modbus.start_calibration(g))

    async def stop_calibration(self, *, confirm: bool = False) -> None:
        """Stop all autocalibration: pulse the stop coil. Needs ``confirm=True``."""
        if confirm is not True:
            raise ServomexConfirmationRequiredError(
                "stopping calibration changes the analyser's gas flow; pass confirm=True",
                context=self._context(),
            )
        modbus = self._require_modbus("stopping a calibration")
        self._require_open()
        await self._modbus_call(modbus.stop_calibration())

    async def loopback(self, data: bytes = b"\x00\x00") -> bytes:
        """FC08 sub-function 0: the analyser echoes two bytes (Modbus only)."""
        modbus = self._require_modbus("the FC08 loopback")
        if not isinstance(data, (bytes, bytearray)) or len(data) != 2:
            raise ServomexValidationError(
                f"loopback data must be exactly 2 bytes, not {data!r}",
                context=self._context(function_code=8),
            )
        self._require_open()
        return await self._modbus_call(modbus.loopback(bytes(data)))


async def open_device(
    port: str | Transport,
    *,
    protocol: ProtocolKind = ProtocolKind.AUTO,
    address: int = 1,
    serial_settings: SerialSettings | None = None,
    timeout: float = 1.0,  # noqa: ASYNC109 (per call and first frame, not a deadline)
    identify: bool = True,
) -> Analyzer:
    """Open an analyser and return a (not yet entered) :class:`Analyzer`.

    ::

        async with await open_device("/dev/ttyUSB0", address=30) as analyser:
            frame = await analyser.poll()

    Arguments are checked now; the port is opened, AUTO detection runs and the channels
    are identified when the Analyzer is entered (so nothing is left open if it never is).

    Args:
        port: a serial device path, ``socket://host:port``, ``rfc2217://host:port`` (opened
            and closed by the Analyzer), or an open :class:`Transport` (used, not closed).
        protocol: ``AUTO`` (detect: Modbus RTU, then Modbus ASCII, then listen for the
            broadcast; see ``docs/protocol.md``), ``CONTINUOUS_ASCII``, ``MODBUS_RTU`` or
            ``MODBUS_ASCII``; the strings ``"rtu"``, ``"ascii"``, ``"continuous"`` too.
        address: Modbus slave address 1–247 (the bench 4100D uses 30); AUTO probes it.
        serial_settings: overrides the default ``SerialSettings(port)`` (19200 8-N-1).
        timeout: default per-call and first-frame timeout, in seconds.
        identify: read and cache the channels' names and units (:attr:`Analyzer.info`)
            on entering.

    Raises:
        ServomexValidationError: a bad argument (now).
        ServomexConnectionError: the port is missing or busy (on entering).
        ServomexTimeoutError: AUTO recognised nothing, or ``identify`` got no answer
            (on entering).

    More options (the continuous frame period, the Modbus idle gap, retries, the name
    samples carry) are keyword arguments of :class:`Analyzer` itself; the arguments are
    kept as one :class:`~ophyd_servomex.codec.options.ConnectionOptions`
    (:attr:`Analyzer.options`), which :meth:`Analyzer.from_options` also takes.
    """
    analyzer = Analyzer(
        port,
        protocol=protocol,
        address=address,
        serial_settings=serial_settings,
        timeout=timeout,
        identify=identify,
    )
    await anyio.lowlevel.checkpoint()
    return analyzer


async def open_continuous(
    port: str | Transport,
    *,
    serial_settings: SerialSettings | None = None,
    timeout: float = 1.0,  # noqa: ASYNC109 (first-frame timeout, not a deadline)
) -> Analyzer:
    """A continuous-mode :class:`Analyzer` (no AUTO detection, no identify on entering).

    The thin convenience over :func:`open_device` with ``protocol=CONTINUOUS_ASCII`` and
    ``identify=False``, for callers and tests that want the broadcast path directly::

        fake = FakeTransport()
        async with await open_continuous(fake) as analyser:
            ...
    """
    return await open_device(
        port,
        protocol=ProtocolKind.CONTINUOUS_ASCII,
        serial_settings=serial_settings,
        timeout=timeout,
        identify=False,
    )
