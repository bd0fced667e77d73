"""The frame hub: latest-frame cache and fan-out of frames to any number of subscribers.

Both clients publish here — the continuous client every broadcast frame (and every bad
line, as an error), the Modbus path every polled frame — and the ``Analyzer`` hands out
:class:`Subscription` s on it.

**Overflow rule.** Publishing never blocks. Each subscriber has a bounded buffer
(``buffer_size`` items); when a subscriber has fallen that far behind, the *oldest* item
in its buffer is dropped to make room for the newest, and its :attr:`Subscription.dropped`
counter goes up. A monitor therefore always catches up to the newest frame, and one slow
subscriber never delays the receive loop or any other subscriber.

**Listeners.** Besides the queued subscriptions, :meth:`FrameHub.add_listener` registers a
synchronous callback run inside :meth:`FrameHub.publish` for every item, in the order the
listeners were added, before any waiter wakes; it has no queue and no task (the
ophyd-async devices read the driver through one). A listener that raises is logged and the
others still run. When the hub closes, each listener's ``on_close`` (if given) is called
with the error (``None`` for a clean close), then the listeners are dropped.

**End of the link.** When the hub closes with an error (the link was lost), every
subscriber first receives everything already in its buffer, then the error is raised from
its iterator; nothing already received is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Self

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..codec.errors import ServomexError
from ..codec.models import Frame

__all__ = [
    "DEFAULT_SUBSCRIBER_BUFFER",
    "CloseListener",
    "FrameHub",
    "HubItem",
    "HubListener",
    "Listeners",
    "Subscription",
]

_LOGGER = logging.getLogger(__name__)

type HubItem = Frame | ServomexError
"""What a hub carries: a frame, or the error that replaced one (a bad line, a failed poll)."""

type HubListener = Callable[[HubItem], None]
"""A synchronous callback run inside :meth:`FrameHub.publish` for every item."""

type CloseListener = Callable[[ServomexError | None], None]
"""Called once when the hub closes, with its error (``None`` for a clean close)."""

DEFAULT_SUBSCRIBER_BUFFER = 256
"""Items a subscriber may fall behind before its oldest ones are dropped."""


class Subscription:
    """One subscriber's view of a :class:`FrameHub`.

    Iterate it (``async for frame in sub``) to get every frame published after it was
    created; errors published in between (bad lines, failed polls) are skipped by the
    iterator but returned by :meth:`next_item`. When the hub closes with an error, the
    buffered frames come first, then the error is raised. Use it as an async context
    manager, or call :meth:`close`, to unsubscribe.
    """

    def __init__(self, hub: FrameHub, buffer_size: int) -> None:
        if buffer_size < 1:
            raise ValueError("a subscription needs a buffer of at least one item")
        send, receive = anyio.create_memory_object_stream[HubItem](buffer_size)
        self._hub = hub
        self._send: MemoryObjectSendStream[HubItem] = send
        self._receive: MemoryObjectReceiveStream[HubItem] = receive
        # The hub's own handle on the buffer, used only to drop the oldest item.
        self._evict: MemoryObjectReceiveStream[HubItem] = receive.clone()
        self._terminal: ServomexError | None = None
        self._closed = False
        self.dropped = 0
        """Items this subscriber lost because it fell more than ``buffer_size`` behind."""
        self.delivered = 0
        """Items handed to this subscriber's buffer."""

    # --- the hub's side -------------------------------------------------------------------

    def _offer(self, item: HubItem) -> None:
        try:
            self._send.send_nowait(item)
        except anyio.WouldBlock:
            try:
                self._evict.receive_nowait()
                self.dropped += 1
            except anyio.WouldBlock:  # the consumer emptied it meanwhile
                pass
            self._send.send_nowait(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return
        self.delivered += 1

    def _finish(self, error: ServomexError | None) -> None:
        self._terminal = error
        self._send.close()
        self._evict.close()

    # --- the subscriber's side ------------------------------------------------------------

    async def next_item(self) -> HubItem:
        """The next frame or error; raises the hub's terminal error, or
        ``anyio.EndOfStream`` when the hub closed cleanly or this subscription was closed."""
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._terminal is not None:
                raise self._terminal from None
            raise anyio.EndOfStream from None

    async def next_frame(self) -> Frame:
        """The next frame, skipping errors."""
        while True:
            item = await self.next_item()
            if isinstance(item, Frame):
                return item

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Frame:
        try:
            return await self.next_frame()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Unsubscribe; further iteration ends."""
        if self._closed:
            return
        self._closed = True
        self._hub._discard(self)
        self._send.close()
        self._evict.close()
        self._receive.close()

    async def aclose(self) -> None:
        """Unsubscribe (async spelling of :meth:`close`)."""
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Listeners[T]:
    """Synchronous callbacks run in the order they were added, each under a key for removal.

    :meth:`notify` calls every callback with one argument; one removed by an earlier
    callback meanwhile is skipped, and one that raises is logged to ``logger`` while the
    others still run, so a listener's bug never reaches the publisher. The driver's
    :class:`FrameHub` and the devices' frames notify their listeners through this.
    """

    __slots__ = ("_callbacks", "_logger", "_next_key", "_what")

    def __init__(self, what: str = "listener", logger: logging.Logger = _LOGGER) -> None:
        self._callbacks: dict[int, Callable[[T], None]] = {}
        self._next_key = 0
        self._what = what
        self._logger = logger

    def __len__(self) -> int:
        return len(self._callbacks)

    def add(self, callback: Callable[[T], None]) -> int:
        """Register ``callback``; returns its key for :meth:`remove`."""
        key = self._next_key
        self._next_key += 1
        self._callbacks[key] = callback
        return key

    def remove(self, key: int) -> bool:
        """Forget the callback under ``key``; False when there was none (already removed)."""
        return self._callbacks.pop(key, None) is not None

    def notify(self, argument: T) -> None:
        """Call every callback with ``argument``; one that raises is logged and skipped."""
        for key, callback in tuple(self._callbacks.items()):
            if key not in self._callbacks:  # removed by an earlier callback meanwhile
                continue
            try:
                callback(argument)
            except Exception:  # one failing listener must not starve the others
                self._logger.exception("%s %r failed", self._what, callback)


class FrameHub:
    """Latest-frame cache plus fan-out; publishing is synchronous and never blocks."""

    def __init__(self, *, buffer_size: int = DEFAULT_SUBSCRIBER_BUFFER) -> None:
        self._buffer_size = buffer_size
        self._subscribers: list[Subscription] = []
        self._on_item: Listeners[HubItem] = Listeners("frame hub listener")
        self._on_close: Listeners[ServomexError | None] = Listeners("frame hub listener")
        self._latest: Frame | None = None
        self._version = 0
        self._changed: anyio.Event | None = None
        self._terminal: ServomexError | None = None
        self._closed = False
        self.errors = 0
        """Errors published (bad lines, failed polls)."""

    @property
    def latest(self) -> Frame | None:
        """The newest frame published, or ``None``."""
        return self._latest

    @property
    def version(self) -> int:
        """How many frames have been published; grows by one per frame."""
        return self._version

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    @property
    def terminal_error(self) -> ServomexError | None:
        """The error the hub closed with, if any."""
        return self._terminal

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions."""
        return len(self._subscribers)

    @property
    def listener_count(self) -> int:
        """Registered listeners (see :meth:`add_listener`)."""
        return len(self._on_item)

    def publish(self, item: HubItem) -> None:
        """Hand a frame (or an error) to every listener and subscriber; a frame also
        becomes ``latest`` first, so a listener sees it there."""
        if self._closed:
            return
        if isinstance(item, Frame):
            self._latest = item
            self._version += 1
        else:
            self.errors += 1
        if self._on_item:
            self._on_item.notify(item)
        for sub in tuple(self._subscribers):
            sub._offer(item)
        self._wake()

    def close(self, error: ServomexError | None = None) -> None:
        """End every subscription: they drain their buffers, then see ``error`` (if any)."""
        if self._closed:
            return
        self._closed = True
        self._terminal = error
        for sub in tuple(self._subscribers):
            sub._finish(error)
        self._subscribers.clear()
        closing = self._on_close
        self._on_item, self._on_close = Listeners(), Listeners()
        closing.notify(error)
        self._wake()

    def add_listener(
        self, on_item: HubListener, *, on_close: CloseListener | None = None
    ) -> Callable[[], None]:
        """Call ``on_item`` synchronously for every item published from now on.

        ``on_close`` is called once when the hub closes, with its error; on a hub that is
        already closed it is called at once. Returns a function that removes the listener
        (calling it again, or after the close, does nothing).
        """
        if self._closed:
            if on_close is not None:
                on_close(self._terminal)
            return _nothing
        item_key = self._on_item.add(on_item)
        close_key = None if on_close is None else self._on_close.add(on_close)

        def remove() -> None:
            self._on_item.remove(item_key)
            if close_key is not None:
                self._on_close.remove(close_key)

        return remove

    def subscribe(self, *, buffer_size: int | None = None) -> Subscription:
        """A new subscription to every item published from now on."""
        sub = Subscription(self, buffer_size or self._buffer_size)
        if self._closed:
            sub._finish(self._terminal)
        else:
            self._subscribers.append(sub)
        return sub

    async def wait_change(self) -> None:
        """Wait until the next publish or close."""
        if self._closed:
            return
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def _wake(self) -> None:
        event, self._changed = self._changed, None
        if event is not None:
            event.set()

    def _discard(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)


def _nothing() -> None:
    """The remover of a listener that was never registered (the hub had closed)."""
