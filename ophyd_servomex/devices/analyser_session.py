"""What the devices need from a driver session, and how one is opened.

A *session* is the driver's :class:`~ophyd_servomex.driver.Analyzer` (or anything shaped
like it): the devices only use the methods listed in :class:`AnalyserSession`. Frames come
from the session's :attr:`AnalyserSession.hub`, on which the devices register one
synchronous listener (see :mod:`ophyd_servomex.devices.frames`); ``poll`` publishes each
frame there before returning it. A
:data:`SessionFactory` opens one as an async context manager; the connector enters and
leaves it inside its own long-lived owner task, so the driver's task groups are entered
and exited in the same task, whatever task called ``connect()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..codec.errors import ServomexValidationError
from ..codec.models import (
    CalGroupState,
    DeviceInfo,
    Frame,
    ProtocolKind,
)
from ..codec.options import ConnectionOptions

if TYPE_CHECKING:
    from ..driver.hub import FrameHub

__all__ = ["AnalyserSession", "SessionFactory", "device_session_factory"]


@runtime_checkable
class AnalyserSession(Protocol):
    """The part of the driver's ``Analyzer`` the ophyd-async devices use."""

    @property
    def protocol(self) -> ProtocolKind:
        """The protocol in use (never AUTO once open)."""
        ...

    @property
    def address(self) -> int | None:
        """The Modbus address (``None`` or ignored in continuous mode)."""
        ...

    @property
    def port(self) -> str:
        """The port the session talks through."""
        ...

    @property
    def dropped_frames(self) -> int:
        """Bad or lost frames so far."""
        ...

    async def identify(self) -> DeviceInfo:
        """Channel ids, names and units."""
        ...

    @property
    def hub(self) -> FrameHub:
        """Where every frame of the session is published (the driver's hub; closed, with
        the error, when the link is lost)."""
        ...

    async def poll(self, *, wait_fresh: bool = True, max_wait: float | None = None) -> Frame:
        """One frame, published to :attr:`hub` before it is returned. Modbus: a fresh
        sweep. Continuous: the next broadcast (``wait_fresh``; at most ``max_wait`` s, then
        a ``ServomexTimeoutError``), or the latest one."""
        ...

    async def start_calibration(self, group: int, *, confirm: bool = False) -> Any:
        """Pulse the start coil of ``group`` (Modbus only, needs ``confirm=True``)."""
        ...

    async def stop_calibration(self, *, confirm: bool = False) -> Any:
        """Pulse the stop-all coil (Modbus only, needs ``confirm=True``)."""
        ...

    async def calibration_status(self, group: int) -> CalGroupState:
        """The state of one autocalibration group."""
        ...


SessionFactory = Callable[[], AbstractAsyncContextManager[AnalyserSession]]
"""Opens a session; the connector enters it in its owner task and leaves it there."""


def device_session_factory(options: ConnectionOptions) -> SessionFactory:
    """A factory opening a stand-alone session: a new driver ``Analyzer`` each time, built
    from ``options`` (always identifying on opening: the devices need the channels).

    Each call opens the port afresh, so after a lost link the connector's reconnect
    attempts find a USB adapter that came back under the same path.
    """
    if not isinstance(options, ConnectionOptions):
        raise ServomexValidationError(f"options must be a ConnectionOptions, not {options!r}")
    identified = replace(options, identify=True)

    @asynccontextmanager
    async def open_session() -> AsyncIterator[AnalyserSession]:
        from ..driver import Analyzer

        async with Analyzer.from_options(identified) as analyzer:
            yield analyzer

    return open_session
