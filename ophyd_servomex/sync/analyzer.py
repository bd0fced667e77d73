"""One analyser behind a blocking portal: :class:`SyncAnalyzer`, the blocking twin of
:class:`~ophyd_servomex.driver.Analyzer`.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Self

from anyio.from_thread import BlockingPortal

from ..codec.errors import ServomexConnectionError
from ..codec.models import (
    AnalyserStatus,
    Availability,
    CalGroupState,
    Capability,
    ChannelId,
    ChannelStatus,
    DeviceInfo,
    Frame,
    ProtocolKind,
    Reading,
    Sample,
)
from ..driver import (
    DEFAULT_BUFFER_SIZE,
    Analyzer,
    DetectionResult,
    OverflowPolicy,
)
from ._portal import _refuse_in_loop
from .recording import SyncRecording, _record_in


class SyncAnalyzer:
    """A blocking twin of :class:`~ophyd_servomex.driver.Analyzer`; open it with
    :meth:`Servomex.open` (or :meth:`SyncManager.add`). A context manager."""

    def __init__(
        self,
        analyzer: Analyzer,
        portal: BlockingPortal,
        closer: Callable[[], None],
        *,
        close_at_exit: bool = True,
    ) -> None:
        self._analyzer = analyzer
        self._portal = portal
        self._closer = closer
        self._closed = False
        self._finalizer: weakref.finalize[Any, Any] | None = (
            weakref.finalize(self, closer) if close_at_exit else None
        )

    def _call[T](self, fn: Callable[[], Awaitable[T]]) -> T:
        _refuse_in_loop(f"SyncAnalyzer.{getattr(fn, '__name__', 'call')}")
        if self._closed:
            raise ServomexConnectionError(
                "this SyncAnalyzer is closed; open it again with Servomex.open(...)"
            )
        return self._portal.call(fn)

    def _call_sync[T](self, fn: Callable[[], T]) -> T:
        _refuse_in_loop("SyncAnalyzer")
        if self._closed:
            raise ServomexConnectionError("this SyncAnalyzer is closed")
        return self._portal.call(fn)

    # --- state (no I/O) -------------------------------------------------------------------

    @property
    def analyzer(self) -> Analyzer:
        """The async :class:`Analyzer` (use it only inside this object's event loop)."""
        return self._analyzer

    @property
    def protocol(self) -> ProtocolKind:
        """The mode in use (resolved by AUTO)."""
        return self._analyzer.protocol

    @property
    def address(self) -> int | None:
        """The Modbus slave address (``None`` in continuous mode)."""
        return self._analyzer.address

    @property
    def port(self) -> str:
        """The port string."""
        return self._analyzer.port

    @property
    def name(self) -> str:
        """The name samples carry."""
        return self._analyzer.name

    @property
    def info(self) -> DeviceInfo | None:
        """What :meth:`identify` learnt."""
        return self._analyzer.info

    @property
    def detection(self) -> DetectionResult | None:
        """What AUTO detection tried and found."""
        return self._analyzer.detection

    @property
    def capabilities(self) -> Capability:
        """What the analyser can do in its current mode (a :class:`Capability` set)."""
        return self._analyzer.capabilities

    def availability(self, capability: Capability) -> Availability:
        """Whether one capability is available in the current mode."""
        return self._analyzer.availability(capability)

    @property
    def dropped_frames(self) -> int:
        """Bad lines skipped (continuous) or failed polls (Modbus)."""
        return self._analyzer.dropped_frames

    @property
    def is_open(self) -> bool:
        """True until :meth:`close`."""
        return not self._closed and self._analyzer.is_open

    def snapshot(self) -> Frame | None:
        """The latest frame, without I/O."""
        return self._analyzer.snapshot()

    def __repr__(self) -> str:
        return f"Sync{self._analyzer!r}"

    # --- the twins ------------------------------------------------------------------------

    def poll(self, *, wait_fresh: bool = True, max_wait: float | None = None) -> Frame:
        """Blocking :meth:`Analyzer.poll`."""
        return self._call(partial(self._analyzer.poll, wait_fresh=wait_fresh, max_wait=max_wait))

    def poll_samples(
        self, names: Sequence[str] | None = None, timeout: float | None = None
    ) -> list[Sample]:
        """Blocking :meth:`Analyzer.poll_samples`: one sample per channel."""
        return self._call(partial(self._analyzer.poll_samples, names, timeout))

    def read_all(self) -> dict[ChannelId, Reading]:
        """Blocking :meth:`Analyzer.read_all`."""
        return self._call(self._analyzer.read_all)

    def read_channel(self, channel: str | ChannelId) -> Reading:
        """Blocking :meth:`Analyzer.read_channel`."""
        return self._call(partial(self._analyzer.read_channel, channel))

    def status(self, channel: str | ChannelId) -> ChannelStatus:
        """Blocking :meth:`Analyzer.status`."""
        return self._call(partial(self._analyzer.status, channel))

    def analyser_status(self) -> AnalyserStatus:
        """Blocking :meth:`Analyzer.analyser_status`."""
        return self._call(self._analyzer.analyser_status)

    def calibration_status(self, group: int) -> CalGroupState:
        """Blocking :meth:`Analyzer.calibration_status`."""
        return self._call(partial(self._analyzer.calibration_status, group))

    def identify(self) -> DeviceInfo:
        """Blocking :meth:`Analyzer.identify`."""
        return self._call(self._analyzer.identify)

    def start_calibration(self, group: int, *, confirm: bool = False) -> None:
        """Blocking :meth:`Analyzer.start_calibration` (needs ``confirm=True``)."""
        return self._call(partial(self._analyzer.start_calibration, group, confirm=confirm))

    def stop_calibration(self, *, confirm: bool = False) -> None:
        """Blocking :meth:`Analyzer.stop_calibration` (needs ``confirm=True``)."""
        return self._call(partial(self._analyzer.stop_calibration, confirm=confirm))

    def loopback(self, data: bytes = b"\x00\x00") -> bytes:
        """Blocking :meth:`Analyzer.loopback`."""
        return self._call(partial(self._analyzer.loopback, data))

    def subscribe(self, *, buffer_size: int | None = None) -> Iterator[Frame]:
        """Every frame from now on (blocking iterator over :meth:`Analyzer.subscribe`)."""
        subscription = self._call_sync(partial(self._analyzer.subscribe, buffer_size=buffer_size))
        portal = self._portal

        def frames() -> Iterator[Frame]:
            try:
                while True:
                    try:
                        yield self._call(subscription.__anext__)
                    except StopAsyncIteration:
                        return
            finally:
                if not self._closed:
                    portal.call(subscription.close)

        return frames()

    def stream(
        self,
        rate_hz: float | None = None,
        *,
        count: int | None = None,
        duration: float | None = None,
        buffer_size: int | None = None,
    ) -> Iterator[Sample]:
        """Samples as they come (blocking iterator over :meth:`Analyzer.stream`).

        The session is entered and left in one task of the analyser's event loop (a Modbus
        stream's poll loop lives there); closing the iterator stops it.
        """
        session = self._call_sync(
            partial(
                self._analyzer.stream,
                rate_hz,
                count=count,
                duration=duration,
                buffer_size=buffer_size,
            )
        )
        context = self._portal.wrap_async_context_manager(session)

        def samples() -> Iterator[Sample]:
            context.__enter__()
            try:
                while True:
                    try:
                        yield self._call(session.__anext__)
                    except StopAsyncIteration:
                        return
            finally:
                if not self._closed:
                    context.__exit__(None, None, None)

        return samples()

    def record(
        self,
        *,
        rate_hz: float,
        duration: float | None = None,
        timeout: float | None = None,
        overflow: OverflowPolicy | str = OverflowPolicy.BLOCK,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        ticks: int | None = None,
    ) -> SyncRecording:
        """A drift-free recording of this analyser (see :func:`~ophyd_servomex.driver.record`)."""
        _refuse_in_loop("SyncAnalyzer.record")
        return _record_in(
            self._portal,
            self._analyzer,
            rate_hz=rate_hz,
            duration=duration,
            names=None,
            timeout=timeout,
            overflow=overflow,
            buffer_size=buffer_size,
            ticks=ticks,
        )

    # --- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the analyser (and, when it has its own, the event loop thread)."""
        if self._closed:
            return
        _refuse_in_loop("SyncAnalyzer.close")
        self._closed = True
        if self._finalizer is not None:
            self._finalizer.detach()
        self._closer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
