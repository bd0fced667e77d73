"""Signal and command backends over the frame hub and the driver session.

:class:`FrameSignalBackend` is the one small backend every read-only signal uses: it pulls
its value out of a :class:`~ophyd_servomex.devices.frames.FrameSnapshot` with an extractor
function and stamps it with the frame's own timestamp. It does no I/O, so reading a
signal, describing it or subscribing to it never touches the port.

:class:`SessionCommandBackend` runs an action (a fresh poll, a calibration pulse) through
an async callable the connector provides. In mock mode ophyd-async swaps both for its own
mock backends, which is what makes ``connect(mock=True)`` work without a port.

:class:`SettingBackend` (a run-time setting such as ``poll_rate_hz``) and
:class:`StateBackend` (the read-only ``link_state``) hold their own value; both are
``SoftSignalBackend`` s, so mock mode keeps their value and ``bps.mv`` works on settings.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from bluesky.protocols import Reading
from event_model import DataKey
from ophyd_async.core import (
    Callback,
    Command,
    CommandBackend,
    SignalBackend,
    SignalDatatypeT,
    SignalMetadata,
    SoftSignalBackend,
    make_datakey,
)

from ..codec.errors import (
    ErrorContext,
    ServomexError,
    ServomexUnsupportedError,
)
from .frames import DeviceFrames, FrameSnapshot
from .link import ALARM_INVALID

__all__ = [
    "FrameSignalBackend",
    "SessionCommandBackend",
    "SettingBackend",
    "StateBackend",
    "execute",
    "run_in_task",
]


class FrameSignalBackend(SignalBackend[SignalDatatypeT]):
    """A read-only backend whose value is one field of the hub's current frame.

    ``extract`` computes the value from a snapshot; ``severity`` (optional) its alarm
    severity (0 none, 1 minor, 2 major; 3, INVALID, for the last frame re-sent when the link
    is lost). ``default`` is the value shown in ``describe()`` before any frame has arrived.
    Every reading carries the frame's timestamp, so all the fields of one ``read()`` agree
    to the microsecond. While the hub is down (not connected, or the link lost) a read
    raises the hub's typed :class:`ServomexConnectionError` at once.
    """

    def __init__(
        self,
        datatype: type[SignalDatatypeT],
        hub: DeviceFrames,
        extract: Callable[[FrameSnapshot], SignalDatatypeT],
        *,
        source: str,
        default: SignalDatatypeT,
        units: str | None = None,
        precision: int | None = None,
        severity: Callable[[FrameSnapshot], int] | None = None,
        context: ErrorContext | None = None,
    ) -> None:
        super().__init__(datatype)
        self._datatype = datatype
        self._hub = hub
        self._extract = extract
        self._source = source
        self._default = default
        self._severity = severity
        self._context = context or ErrorContext()
        self._listener_key: int | None = None
        self.metadata: SignalMetadata = {}
        if units is not None:
            self.metadata["units"] = units
        if precision is not None:
            self.metadata["precision"] = precision
        if isinstance(datatype, type) and issubclass(datatype, Enum):
            self.metadata["choices"] = [str(member.value) for member in datatype]

    def source(self, name: str, read: bool) -> str:
        """The signal's source string (``servomex://port?address=…#field``)."""
        return self._source

    async def connect(self, timeout: float) -> None:  # noqa: ASYNC109 (ophyd-async API)
        """Nothing to connect: the analyser's connector owns the session."""

    async def put(self, value: SignalDatatypeT | None) -> None:
        """Refuse: every Servomex signal is read-only."""
        raise ServomexUnsupportedError(f"{self._source} is read-only", context=self._context)

    def reading_for(self, snapshot: FrameSnapshot) -> Reading[SignalDatatypeT]:
        """This signal's reading for one snapshot (no I/O, no awaiting)."""
        if not snapshot.valid:
            severity = ALARM_INVALID
        else:
            severity = self._severity(snapshot) if self._severity is not None else 0
        return {
            "value": self._extract(snapshot),
            "timestamp": snapshot.timestamp,
            "alarm_severity": severity,
        }

    def _snapshot(self) -> FrameSnapshot:
        snapshot = self._hub.current()
        if snapshot is None:
            raise self._hub.unavailable()
        return snapshot

    async def get_datakey(self, source: str) -> DataKey:
        """dtype, shape, units and precision, from the current (or last) value's type."""
        snapshot = self._hub.describe_snapshot()
        value = self._extract(snapshot) if snapshot is not None else self._default
        return make_datakey(self._datatype, value, source, self.metadata)

    async def get_reading(self) -> Reading[SignalDatatypeT]:
        """The current (or pinned) frame's value, timestamp and severity."""
        return self.reading_for(self._snapshot())

    async def get_value(self) -> SignalDatatypeT:
        """The current (or pinned) frame's value."""
        return self._extract(self._snapshot())

    async def get_setpoint(self) -> SignalDatatypeT:
        """Read-only signals have no setpoint; the value stands in for it."""
        return await self.get_value()

    def set_callback(self, callback: Callback[Reading[SignalDatatypeT]] | None) -> None:
        """Deliver every new frame's reading to ``callback`` (the current one at once)."""
        if self._listener_key is not None:
            if callback is not None:
                raise RuntimeError(f"{self._source}: a callback is already set")
            self._hub.remove_listener(self._listener_key)
            self._listener_key = None
        if callback is not None:
            self._listener_key = self._hub.add_listener(
                lambda snapshot: callback(self.reading_for(snapshot))
            )


class SettingBackend(SoftSignalBackend[SignalDatatypeT]):
    """A settable value the device applies at once (e.g. ``poll_rate_hz``).

    ``apply`` checks and applies a new value and returns the value in force (it raises a
    :class:`~ophyd_servomex.codec.errors.ServomexValidationError` for a bad one, and the
    old value stays). Works with ``bps.mv`` / ``signal.set()``; in mock mode the value is
    only stored.
    """

    def __init__(
        self,
        datatype: type[SignalDatatypeT],
        initial_value: SignalDatatypeT,
        apply: Callable[[SignalDatatypeT], SignalDatatypeT],
        *,
        source: str,
        units: str | None = None,
        precision: int | None = None,
    ) -> None:
        super().__init__(datatype, initial_value, units, precision)
        self._apply = apply
        self._source = source

    def source(self, name: str, read: bool) -> str:
        """The setting's source string."""
        return self._source

    async def put(self, value: Any) -> None:
        """Apply ``value`` (``None``: the initial value) and show it."""
        wanted = self.initial_value if value is None else self.converter.write_value(value)
        await super().put(self._apply(wanted))


class StateBackend(SoftSignalBackend[SignalDatatypeT]):
    """A read-only value the device sets, with its own alarm severity (``link_state``)."""

    def __init__(
        self,
        datatype: type[SignalDatatypeT],
        initial_value: SignalDatatypeT,
        *,
        source: str,
        severity: int = 0,
        context: ErrorContext | None = None,
    ) -> None:
        super().__init__(datatype, initial_value)
        self._source = source
        self._context = context or ErrorContext()
        self.update(initial_value, severity=severity)

    def source(self, name: str, read: bool) -> str:
        """The state's source string."""
        return self._source

    def update(self, value: SignalDatatypeT, *, severity: int = 0) -> None:
        """Show ``value`` with ``severity``, stamped now, and tell the subscriber."""
        self.reading = {
            "value": self.converter.write_value(value),
            "timestamp": time.time(),
            "alarm_severity": severity,
        }
        if self.callback is not None:
            self.callback(self.reading)

    async def put(self, value: Any) -> None:
        """Refuse: the device alone sets its state."""
        raise ServomexUnsupportedError(f"{self._source} is read-only", context=self._context)


class SessionCommandBackend[**P, T](CommandBackend[P, T]):
    """A command backend that awaits a callable provided by the connector.

    The signature is taken from ``action`` with its annotations resolved, so ophyd-async's
    mock command backend (which converts arguments by annotation) works in mock mode.
    """

    def __init__(self, action: Callable[P, Awaitable[T]], *, source: str) -> None:
        super().__init__(inspect.signature(action, eval_str=True))
        self._action = action
        self._source = source

    def source(self, name: str) -> str:
        """The command's source string."""
        return self._source

    async def connect(self, timeout: float) -> None:  # noqa: ASYNC109 (ophyd-async API)
        """Nothing to connect: the analyser's connector owns the session."""

    async def execute(self, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the action."""
        return await self._action(*args, **kwargs)


async def execute[**P, T](command: Command[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a command and return its result, re-raising the driver's own error.

    ophyd-async turns any ``TimeoutError`` from a command into a bare
    ``TimeoutError(source)``; a :class:`ServomexTimeoutError` (also a ``TimeoutError``)
    would lose its message and context that way, so it is unwrapped again here.
    """
    try:
        result: T = await command.execute(*args, **kwargs)
    except TimeoutError as exc:
        cause = exc.__cause__
        if isinstance(cause, ServomexError):
            raise cause from None
        raise
    return result


async def run_in_task[**P, T](command: Command[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a command's action in the calling task and return its result.

    ``Command.execute()`` wraps the action in an ``AsyncStatus`` (a task of its own) and an
    ``asyncio.wait_for``: two more event-loop hops and a task per call, which ``count()``
    pays at every event when ``trigger()`` goes through it. The analyser's own verbs
    await the command's backend instead: the connector's action in real mode, ophyd-async's
    mock backend in mock mode (which still converts the arguments and records the call for
    ``get_mock_execute``). The driver's own errors arrive as they are, so there is nothing
    to unwrap as in :func:`execute`. The backend is ophyd-async's ``Command._connector
    .backend`` (0.21.3), read here and nowhere else.
    """
    backend: CommandBackend[P, T] = command._connector.backend
    return await backend.execute(*args, **kwargs)
