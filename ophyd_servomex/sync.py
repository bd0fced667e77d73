"""The blocking facade: the async driver for plain scripts, notebooks and threads.

::

    from ophyd_servomex.sync import Servomex

    with Servomex.open("/dev/ttyUSB0", protocol="modbus-rtu", address=30) as analyser:
        frame = analyser.poll()
        print(frame.channel("I1").value)

    with Servomex.manager() as manager:
        manager.add("o2", "/dev/ttyUSB0", protocol="modbus-rtu", address=30)
        manager.add("co", "/dev/ttyUSB0", protocol="modbus-rtu", address=31)
        print(manager.poll())

Each :class:`SyncAnalyzer` (and each :class:`SyncManager`) runs the async driver in an
event loop of its own, in a daemon thread, behind an anyio blocking portal; every method
is a one-line twin of the async one that waits for its result. The async objects are
entered and left inside the portal (their task groups stay in one task). Closing stops
the loop and the thread; an object left open is closed at interpreter exit.

A blocking call from a thread that runs an event loop would freeze that loop, so it is
refused with :class:`~ophyd_servomex.codec.errors.ServomexConfigurationError`: async code
uses :func:`~ophyd_servomex.driver.open_device` and
:class:`~ophyd_servomex.driver.ServomexManager` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from functools import partial
from types import TracebackType
from typing import Any, Literal, Self, overload

import anyio
from anyio.from_thread import BlockingPortal

from .codec.errors import ServomexConfigurationError, ServomexConnectionError
from .codec.models import (
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
    SerialSettings,
)
from .driver import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_INTER_FRAME_IDLE,
    DEFAULT_RETRIES,
    AcquisitionSummary,
    Analyzer,
    DetectionResult,
    DeviceResult,
    ErrorPolicy,
    OverflowPolicy,
    PollSource,
    Recording,
    ServomexManager,
    open_device,
    record,
)

__all__ = ["Servomex", "SyncAnalyzer", "SyncManager", "SyncRecording"]


def _refuse_in_loop(what: str) -> None:
    """Refuse a blocking call from a thread whose event loop it would freeze."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ServomexConfigurationError(
        f"{what} blocks, and this thread runs an event loop that it would freeze: use the "
        "async API here ('async with open_device(...)' or 'async with ServomexManager()')"
    )


class _PortalThread:
    """An event loop in a daemon thread, reached through a blocking portal."""

    def __init__(self, name: str) -> None:
        ready: Future[BlockingPortal] = Future()
        self._thread = threading.Thread(target=self._main, args=(ready,), name=name, daemon=True)
        self._thread.start()
        self.portal = ready.result()
        self._stopped = False

    @staticmethod
    def _main(ready: Future[BlockingPortal]) -> None:
        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve)
        except BaseException as exc:  # pragma: no cover - the loop failed to start
            if not ready.done():
                ready.set_exception(exc)

    def stop(self) -> None:
        """Stop the loop (cancelling what still runs there) and join the thread."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(RuntimeError):  # already stopped
            self.portal.call(self.portal.stop, True)
        if threading.current_thread() is not self._thread:
            self._thread.join()


class SyncRecording:
    """A recording driven from a blocking caller: ``for batch in rec`` and ``rec.summary``.

    Use it as a context manager (leaving it stops the recording).
    """

    def __init__(self, portal: BlockingPortal, manager: AbstractContextManager[Recording]) -> None:
        self._portal = portal
        self._cm = manager
        self._recording: Recording | None = None

    def __enter__(self) -> Self:
        _refuse_in_loop("SyncRecording")
        self._recording = self._cm.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return self._cm.__exit__(exc_type, exc, tb)

    @property
    def _rec(self) -> Recording:
        if self._recording is None:
            raise ServomexConfigurationError("enter the recording first: 'with ... as rec:'")
        return self._recording

    @property
    def summary(self) -> AcquisitionSummary:
        """The live :class:`AcquisitionSummary`."""
        return self._rec.summary

    @property
    def rate_hz(self) -> float:
        """Ticks per second."""
        return self._rec.rate_hz

    def stop(self) -> None:
        """End the recording after the tick in progress; iteration then drains and ends."""
        self._portal.call(self._rec.stop)

    def __iter__(self) -> Iterator[list[Sample]]:
        stream = self._rec.stream
        while True:
            _refuse_in_loop("SyncRecording")
            try:
                yield self._portal.call(stream.__anext__)
            except StopAsyncIteration:
                return


def _record_in(
    portal: BlockingPortal,
    source: PollSource,
    *,
    rate_hz: float,
    duration: float | None,
    names: Sequence[str] | None,
    timeout: float | None,
    overflow: OverflowPolicy | str,
    buffer_size: int,
    ticks: int | None,
) -> SyncRecording:
    cm = portal.wrap_async_context_manager(
        record(
            source,
            rate_hz=rate_hz,
            duration=duration,
            names=names,
            timeout=timeout,
            overflow=overflow,
            buffer_size=buffer_size,
            ticks=ticks,
        )
    )
    return SyncRecording(portal, cm)


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
    def capabilities(self) -> dict[Capability, Availability]:
        """What the analyser can do in its current mode."""
        return self._analyzer.capabilities

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

    def poll_samples(self, *, wait_fresh: bool = True) -> list[Sample]:
        """Blocking :meth:`Analyzer.poll_samples`."""
        return self._call(partial(self._analyzer.poll_samples, wait_fresh=wait_fresh))

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
        """Samples as they come (blocking iterator over :meth:`Analyzer.stream`)."""
        session = self._call_sync(
            partial(
                self._analyzer.stream,
                rate_hz,
                count=count,
                duration=duration,
                buffer_size=buffer_size,
            )
        )

        def samples() -> Iterator[Sample]:
            try:
                while True:
                    try:
                        yield self._call(session.__anext__)
                    except StopAsyncIteration:
                        return
            finally:
                if not self._closed:
                    self._portal.call(session.aclose)

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


def _closer(cm: AbstractContextManager[Any], thread: _PortalThread) -> Callable[[], None]:
    def close() -> None:
        try:
            cm.__exit__(None, None, None)
        finally:
            thread.stop()

    return close


class SyncManager:
    """A blocking twin of :class:`~ophyd_servomex.driver.ServomexManager`.

    Create it with :meth:`Servomex.manager` (or directly); a context manager. Analysers
    are added by port string; each :meth:`add` returns a :class:`SyncAnalyzer` sharing the
    manager's event loop, whose ``close()`` removes it from the manager.
    """

    def __init__(
        self,
        *,
        retries: int = DEFAULT_RETRIES,
        inter_frame_idle: float = DEFAULT_INTER_FRAME_IDLE,
    ) -> None:
        _refuse_in_loop("SyncManager")
        thread = _PortalThread("servomex-sync-manager")
        try:
            cm = thread.portal.wrap_async_context_manager(
                ServomexManager(retries=retries, inter_frame_idle=inter_frame_idle)
            )
            manager = cm.__enter__()
        except BaseException:
            thread.stop()
            raise
        self._thread = thread
        self._portal = thread.portal
        self._manager = manager
        self._views: dict[str, SyncAnalyzer] = {}
        self._closed = False
        self._close = _closer(cm, thread)
        self._finalizer = weakref.finalize(self, self._close)

    def _call[T](self, fn: Callable[[], Awaitable[T]]) -> T:
        _refuse_in_loop(f"SyncManager.{getattr(fn, '__name__', 'call')}")
        if self._closed:
            raise ServomexConnectionError("this SyncManager is closed")
        return self._portal.call(fn)

    @property
    def manager(self) -> ServomexManager:
        """The async manager (use it only inside this object's event loop)."""
        return self._manager

    @property
    def names(self) -> tuple[str, ...]:
        """The analysers' names, in the order they were added."""
        return self._manager.names

    @property
    def ports(self) -> tuple[str, ...]:
        """The ports held open."""
        return self._manager.ports

    def __contains__(self, name: object) -> bool:
        return name in self._manager

    def __len__(self) -> int:
        return len(self._manager)

    def _view(self, name: str, analyzer: Analyzer) -> SyncAnalyzer:
        view = SyncAnalyzer(
            analyzer, self._portal, partial(self._forget, name), close_at_exit=False
        )
        self._views[name] = view
        return view

    def _forget(self, name: str) -> None:
        self._views.pop(name, None)
        if not self._closed and name in self._manager:
            self._call(partial(self._manager.remove, name))

    def add(
        self,
        name: str,
        port: str,
        *,
        protocol: ProtocolKind | str | None = None,
        address: int | None = None,
        serial_settings: SerialSettings | None = None,
        timeout: float = 1.0,
        identify: bool = True,
        inter_frame_idle: float | None = None,
    ) -> SyncAnalyzer:
        """Blocking :meth:`ServomexManager.add` of a port string."""
        if not isinstance(port, str):
            raise ServomexConfigurationError(
                "SyncManager.add takes a port string: an Analyzer or Transport belongs to "
                "another event loop"
            )
        analyzer = self._call(
            partial(
                self._manager.add,
                name,
                port,
                protocol=protocol,
                address=address,
                serial_settings=serial_settings,
                timeout=timeout,
                identify=identify,
                inter_frame_idle=inter_frame_idle,
            )
        )
        return self._view(name, analyzer)

    def get(self, name: str) -> SyncAnalyzer:
        """The analyser added as ``name``."""
        view = self._views.get(name)
        return view if view is not None else self._view(name, self._manager.get(name))

    def remove(self, name: str) -> None:
        """Blocking :meth:`ServomexManager.remove`."""
        view = self._views.pop(name, None)
        if view is not None:
            view._closed = True
        self._call(partial(self._manager.remove, name))

    @overload
    def poll(
        self,
        names: Sequence[str] | None = None,
        *,
        policy: Literal[ErrorPolicy.RAISE] = ErrorPolicy.RAISE,
    ) -> dict[str, Frame]: ...

    @overload
    def poll(
        self, names: Sequence[str] | None = None, *, policy: Literal[ErrorPolicy.RETURN]
    ) -> dict[str, DeviceResult[Frame]]: ...

    def poll(
        self, names: Sequence[str] | None = None, *, policy: ErrorPolicy = ErrorPolicy.RAISE
    ) -> dict[str, Frame] | dict[str, DeviceResult[Frame]]:
        """Blocking :meth:`ServomexManager.poll`."""
        return self._call(partial(self._manager.poll, names, policy=policy))

    def poll_samples(self, names: Sequence[str] | None = None) -> list[Sample]:
        """Blocking :meth:`ServomexManager.poll_samples`."""
        return self._call(partial(self._manager.poll_samples, names))

    @overload
    def execute_each[T](
        self,
        fn: Callable[[Analyzer], Awaitable[T]],
        names: Sequence[str] | None = None,
        *,
        policy: Literal[ErrorPolicy.RAISE] = ErrorPolicy.RAISE,
    ) -> dict[str, T]: ...

    @overload
    def execute_each[T](
        self,
        fn: Callable[[Analyzer], Awaitable[T]],
        names: Sequence[str] | None = None,
        *,
        policy: Literal[ErrorPolicy.RETURN],
    ) -> dict[str, DeviceResult[T]]: ...

    def execute_each[T](
        self,
        fn: Callable[[Analyzer], Awaitable[T]],
        names: Sequence[str] | None = None,
        *,
        policy: ErrorPolicy = ErrorPolicy.RAISE,
    ) -> dict[str, T] | dict[str, DeviceResult[T]]:
        """Blocking :meth:`ServomexManager.execute_each`; ``fn`` is async and runs in the
        manager's loop (e.g. ``lambda a: a.loopback(b"\\xa5\\x5a")``)."""
        return self._call(partial(self._manager.execute_each, fn, names, policy=policy))

    def record(
        self,
        *,
        rate_hz: float,
        duration: float | None = None,
        names: Sequence[str] | None = None,
        timeout: float | None = None,
        overflow: OverflowPolicy | str = OverflowPolicy.BLOCK,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        ticks: int | None = None,
    ) -> SyncRecording:
        """A drift-free recording of every analyser (see :func:`~ophyd_servomex.driver.record`)."""
        _refuse_in_loop("SyncManager.record")
        return _record_in(
            self._portal,
            self._manager,
            rate_hz=rate_hz,
            duration=duration,
            names=names,
            timeout=timeout,
            overflow=overflow,
            buffer_size=buffer_size,
            ticks=ticks,
        )

    def close(self) -> None:
        """Close every analyser, every port and the event loop thread."""
        if self._closed:
            return
        _refuse_in_loop("SyncManager.close")
        self._closed = True
        for view in self._views.values():
            view._closed = True
        self._views.clear()
        self._finalizer.detach()
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Servomex:
    """Entry points of the blocking API: :meth:`open` one analyser, or a :meth:`manager`."""

    @staticmethod
    def open(
        port: str,
        *,
        protocol: ProtocolKind | str = ProtocolKind.AUTO,
        address: int = 1,
        serial_settings: SerialSettings | None = None,
        timeout: float = 1.0,
        identify: bool = True,
        expected_period: float = 2.0,
        name: str | None = None,
        inter_frame_idle: float = DEFAULT_INTER_FRAME_IDLE,
        retries: int = DEFAULT_RETRIES,
    ) -> SyncAnalyzer:
        """Open one analyser (the arguments of :func:`~ophyd_servomex.driver.open_device`).

        Raises:
            ServomexConfigurationError: called from a thread that runs an event loop.
            ServomexConnectionError, ServomexTimeoutError: as ``open_device``.
        """
        _refuse_in_loop("Servomex.open")
        if not isinstance(port, str):
            raise ServomexConfigurationError(
                "Servomex.open takes a port string: a Transport belongs to another event loop"
            )
        thread = _PortalThread(f"servomex-sync {port}")
        try:
            cm = thread.portal.wrap_async_context_manager(
                open_device(
                    port,
                    protocol=protocol,
                    address=address,
                    serial_settings=serial_settings,
                    timeout=timeout,
                    identify=identify,
                    expected_period=expected_period,
                    name=name,
                    inter_frame_idle=inter_frame_idle,
                    retries=retries,
                )
            )
            analyzer = cm.__enter__()
        except BaseException:
            thread.stop()
            raise
        return SyncAnalyzer(analyzer, thread.portal, _closer(cm, thread))

    @staticmethod
    def manager(
        *,
        retries: int = DEFAULT_RETRIES,
        inter_frame_idle: float = DEFAULT_INTER_FRAME_IDLE,
    ) -> SyncManager:
        """A :class:`SyncManager` for several Modbus analysers on shared lines."""
        return SyncManager(retries=retries, inter_frame_idle=inter_frame_idle)
