"""Signal and command backends over the frame hub and the driver session.

:class:`FrameSignalBackend` is the one small backend every read-only signal uses: it pulls
its value out of a :class:`~ophyd_servomex.devices.hub.FrameSnapshot` with an extractor
function and stamps it with the frame's own timestamp. It does no I/O, so reading a
signal, describing it or subscribing to it never touches the port.

:class:`SessionCommandBackend` runs an action (a fresh poll, a calibration pulse) through
an async callable the connector provides. In mock mode ophyd-async swaps both for its own
mock backends, which is what makes ``connect(mock=True)`` work without a port.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from bluesky.protocols import Reading
from event_model import DataKey
from ophyd_async.core import (
    Callback,
    Command,
    CommandBackend,
    SignalBackend,
    SignalDatatypeT,
    SignalMetadata,
    make_datakey,
)

from ..codec.errors import (
    ErrorContext,
    ServomexConnectionError,
    ServomexError,
    ServomexUnsupportedError,
)
from .hub import FrameHub, FrameSnapshot

__all__ = ["FrameSignalBackend", "SessionCommandBackend", "execute"]


class FrameSignalBackend(SignalBackend[SignalDatatypeT]):
    """A read-only backend whose value is one field of the hub's current frame.

    ``extract`` computes the value from a snapshot; ``severity`` (optional) its alarm
    severity (0 none, 1 minor, 2 major). ``default`` is the value shown in ``describe()``
    before any frame has arrived. Every reading carries the frame's timestamp, so all the
    fields of one ``read()`` agree to the microsecond.
    """

    def __init__(
        self,
        datatype: type[SignalDatatypeT],
        hub: FrameHub,
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
        severity = self._severity(snapshot) if self._severity is not None else 0
        return {
            "value": self._extract(snapshot),
            "timestamp": snapshot.frame.timestamp,
            "alarm_severity": severity,
        }

    def _snapshot(self) -> FrameSnapshot:
        snapshot = self._hub.current()
        if snapshot is None:
            raise ServomexConnectionError(
                f"no frame has arrived yet for {self._source}", context=self._context
            )
        return snapshot

    async def get_datakey(self, source: str) -> DataKey:
        """dtype, shape, units and precision, from the current value's type."""
        snapshot = self._hub.current()
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
