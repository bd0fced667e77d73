"""The blocking facade: the async driver for plain scripts, notebooks and threads.

::

    from ophyd_servomex.sync import Servomex

    with Servomex.open("/dev/ttyUSB0", protocol="modbus-rtu", address=30) as analyser:
        frame = analyser.poll()
        print(frame.channel("I1").value)

    with Servomex.manager() as manager:
        manager.add("o2", "/dev/ttyUSB0", address=30)
        manager.add("co", "/dev/ttyUSB0", address=31)
        for sample in manager.poll_samples():
            print(sample.device, sample.channel, sample.value)

Each :class:`SyncAnalyzer` (and each :class:`SyncManager`) runs the async driver in an
event loop of its own, in a daemon thread, behind an anyio blocking portal; every method
is a one-line twin of the async one that waits for its result. The async objects are
entered and left inside the portal (their task groups stay in one task). Closing stops
the loop and the thread; an object left open is closed at interpreter exit.

A blocking call from a thread that runs an event loop would freeze that loop, so it is
refused with :class:`~ophyd_servomex.codec.errors.ServomexConfigurationError`: async code
uses :func:`~ophyd_servomex.driver.open_device` and
:class:`~ophyd_servomex.driver.ServomexManager` directly.

This module holds :class:`Servomex` and re-exports the rest: :class:`SyncAnalyzer`
(``analyzer.py``), :class:`SyncManager` (``manager.py``), :class:`SyncRecording`
(``recording.py``); the portal thread and its helpers are in ``_portal.py``.
"""

from __future__ import annotations

from .._loop_thread import LoopThread
from ..codec.errors import ErrorContext, ServomexConfigurationError
from ..codec.models import ProtocolKind, SerialSettings
from ..codec.options import (
    DEFAULT_EXPECTED_PERIOD,
    DEFAULT_INTER_FRAME_IDLE,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ConnectionOptions,
    parse_protocol,
)
from ..driver import Analyzer
from ._portal import _refuse_in_loop
from .analyzer import SyncAnalyzer
from .manager import SyncManager
from .recording import SyncRecording

__all__ = ["Servomex", "SyncAnalyzer", "SyncManager", "SyncRecording"]


class Servomex:
    """Entry points of the blocking API: :meth:`open` one analyser, or a :meth:`manager`."""

    @staticmethod
    def open(
        port: str,
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
    ) -> SyncAnalyzer:
        """Open one analyser (the arguments of :func:`~ophyd_servomex.driver.open_device`,
        plus :class:`~ophyd_servomex.driver.Analyzer`'s tuning options).

        Raises:
            ServomexConfigurationError: called from a thread that runs an event loop.
            ServomexValidationError: a bad argument (before any thread is started).
            ServomexConnectionError, ServomexTimeoutError: as ``open_device``.
        """
        _refuse_in_loop("Servomex.open")
        if not isinstance(port, str):
            raise ServomexConfigurationError(
                "Servomex.open takes a port string: a Transport belongs to another event loop"
            )
        options = ConnectionOptions(
            port,
            protocol=parse_protocol(protocol, context=ErrorContext(port=port or None)),
            address=address,
            serial_settings=serial_settings,
            timeout=timeout,
            inter_frame_idle=inter_frame_idle,
            retries=retries,
            identify=identify,
            expected_period=expected_period,
        )
        thread = LoopThread(f"servomex-sync {port}")
        try:
            analyzer = thread.enter(Analyzer.from_options(options, name=name))
        except BaseException:
            thread.stop()
            raise
        return SyncAnalyzer(analyzer, thread.portal, thread.stop)

    @staticmethod
    def manager(
        *,
        retries: int = DEFAULT_RETRIES,
        inter_frame_idle: float = DEFAULT_INTER_FRAME_IDLE,
        identify: bool = True,
    ) -> SyncManager:
        """A :class:`SyncManager` for several Modbus analysers on shared lines."""
        return SyncManager(retries=retries, inter_frame_idle=inter_frame_idle, identify=identify)
