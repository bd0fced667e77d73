"""Several analysers behind one blocking portal: :class:`SyncManager`, the blocking twin of
:class:`~ophyd_servomex.driver.ServomexManager`.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from types import TracebackType
from typing import Literal, Self, overload

from .._loop_thread import LoopThread
from ..codec.errors import ServomexConfigurationError, ServomexConnectionError
from ..codec.models import (
    Frame,
    ProtocolKind,
    Sample,
    SerialSettings,
)
from ..codec.options import DEFAULT_TIMEOUT
from ..driver import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_INTER_FRAME_IDLE,
    DEFAULT_RETRIES,
    Analyzer,
    DeviceResult,
    ErrorPolicy,
    OverflowPolicy,
    ServomexManager,
)
from ._portal import _refuse_in_loop
from .analyzer import SyncAnalyzer
from .recording import SyncRecording, _record_in


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
        identify: bool = True,
    ) -> None:
        _refuse_in_loop("SyncManager")
        thread = LoopThread("servomex-sync-manager")
        try:
            manager = thread.enter(
                ServomexManager(
                    retries=retries, inter_frame_idle=inter_frame_idle, identify=identify
                )
            )
        except BaseException:
            thread.stop()
            raise
        self._thread = thread
        self._portal = thread.portal
        self._manager = manager
        self._views: dict[str, SyncAnalyzer] = {}
        self._closed = False
        self._close = thread.stop
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
        protocol: ProtocolKind = ProtocolKind.MODBUS_RTU,
        address: int = 1,
        serial_settings: SerialSettings | None = None,
        timeout: float = DEFAULT_TIMEOUT,
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

    def poll(self, names: Sequence[str] | None = None) -> dict[str, DeviceResult[Frame]]:
        """Blocking :meth:`ServomexManager.poll` (every device's result, failures included)."""
        return self._call(partial(self._manager.poll, names))

    def poll_samples(
        self, names: Sequence[str] | None = None, timeout: float | None = None
    ) -> list[Sample]:
        """Blocking :meth:`ServomexManager.poll_samples`."""
        return self._call(partial(self._manager.poll_samples, names, timeout))

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
