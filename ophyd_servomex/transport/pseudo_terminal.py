"""A pseudo-terminal pair: the simulator (or a test) owns the master, a client opens the slave.

:func:`open_pty_pair` returns a :class:`PtyPair`: ``pair.path`` is the slave's device path
(``/dev/pts/5``), which a client opens like any serial port with
``open_transport(pair.path)`` (anyserial, exclusive); ``pair.master`` is a
:class:`PtyMasterTransport` speaking to whoever has the slave open.

How the master behaves, given Linux pty semantics (a master reads ``EIO`` and polls
``POLLHUP`` while no slave is open):

* while no client has the slave open, ``receive()`` waits, checking every
  :data:`PEER_POLL_INTERVAL` seconds (the kernel offers no event for a slave being
  opened), and ``send()`` drops the bytes, like a serial line with nothing attached;
* once a client has been seen, ``receive()`` waits on the fd; when the client hangs up it
  delivers what the client left, then raises
  :class:`~ophyd_servomex.transport.errors.LinkLostError` once, and the next ``receive()``
  waits for the next client. Nothing spins.
* closing the master (``pair.aclose()``) is the pulled cable: a client reading the slave
  gets a ``LinkLostError``.

POSIX only.
"""

from __future__ import annotations

import errno
import os
import select
import sys
from types import TracebackType
from typing import Self

import anyio
import anyio.lowlevel

from ..codec.errors import ServomexUnsupportedError
from .base import DEFAULT_RECEIVE_SIZE, ByteStreamTransport
from .errors import link_lost, translating_io_errors, transport_closed

__all__ = ["PEER_POLL_INTERVAL", "PtyMasterTransport", "PtyPair", "open_pty_pair"]

#: seconds between checks for a client while none has the slave open
PEER_POLL_INTERVAL = 0.01

_DRAIN_CHUNK = 65536


class PtyMasterTransport(ByteStreamTransport):
    """The master side of a pseudo-terminal, as a :class:`Transport` (see the module notes).

    ``port`` is the slave's path, the port the client sees; ``settings`` is ``None`` (the
    client's serial settings apply to the slave).
    """

    def __init__(self, fd: int, slave_path: str) -> None:
        super().__init__(slave_path, None)
        self._fd = fd
        self._closed = False
        self._peer_seen = False  # a client had the slave open since the last hang-up
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)

    @property
    def fd(self) -> int:
        """The master's file descriptor (non-blocking)."""
        return self._fd

    @property
    def client_connected(self) -> bool:
        """Whether some process has the slave side open right now."""
        return not self._closed and not self._poll() & select.POLLHUP

    async def wait_for_client(self) -> None:
        """Return once a client has the slave open (checking every PEER_POLL_INTERVAL)."""
        while True:
            if self._closed:
                raise transport_closed(self.port)
            if self.client_connected:
                self._peer_seen = True
                await anyio.lowlevel.checkpoint()
                return
            await anyio.sleep(PEER_POLL_INTERVAL)

    async def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Wait for bytes from the client; raise LinkLostError once when it hangs up."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        while True:
            if self._closed:
                raise transport_closed(self.port)
            events = self._poll()
            if events & select.POLLHUP and not events & select.POLLIN:
                if self._peer_seen:
                    self._peer_seen = False
                    raise link_lost(self.port, "the client closed the pty")
                await anyio.sleep(PEER_POLL_INTERVAL)  # nobody there yet: wait, don't spin
                continue
            if not events & select.POLLHUP:
                self._peer_seen = True
            with translating_io_errors(self.port):
                await anyio.wait_readable(self._fd)
            if self._closed:
                raise transport_closed(self.port)
            try:
                data = os.read(self._fd, max_bytes)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise link_lost(self.port, "pty error", exc) from exc
                # EIO: no slave is open (any bytes the client left have been read)
                if self._peer_seen:
                    self._peer_seen = False
                    raise link_lost(self.port, "the client closed the pty") from exc
                await anyio.sleep(PEER_POLL_INTERVAL)
                continue
            if data:
                self._peer_seen = True
                return data

    async def send(self, item: bytes) -> None:
        """Write ``item`` to the client; dropped while no client has the slave open."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(item)
        while view:
            if self._closed:
                raise transport_closed(self.port)
            if self._poll() & select.POLLHUP:
                return  # nobody listening: the bytes are lost, as on an idle serial line
            try:
                written = os.write(self._fd, view)
            except (BlockingIOError, InterruptedError):
                with translating_io_errors(self.port):
                    await anyio.wait_writable(self._fd)
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return
                raise link_lost(self.port, "pty error", exc) from exc
            view = view[written:]

    async def reset_input_buffer(self) -> None:
        """Read and discard what the client sent that was not received yet."""
        if self._closed:
            raise transport_closed(self.port)
        while True:
            try:
                data = os.read(self._fd, _DRAIN_CHUNK)
            except OSError:  # EAGAIN: drained; EIO: no client
                break
            if not data:
                break
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Close the master (the client sees a lost link); idempotent."""
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self._fd)
            os.close(self._fd)
        await anyio.lowlevel.checkpoint()

    def _poll(self) -> int:
        """The master's current poll events (POLLIN, POLLHUP…), without waiting."""
        result = self._poller.poll(0)
        return result[0][1] if result else 0


class PtyPair:
    """A pseudo-terminal: ``master`` (a Transport) and the slave ``path`` a client opens.

    Use as ``async with open_pty_pair() as pair:`` or call :meth:`aclose`.
    """

    def __init__(self, master: PtyMasterTransport, path: str) -> None:
        self._master = master
        self._path = path

    @property
    def master(self) -> PtyMasterTransport:
        """The master side, for the simulator or a test."""
        return self._master

    @property
    def path(self) -> str:
        """The slave's device path, for ``open_transport(path)``."""
        return self._path

    async def aclose(self) -> None:
        """Close the master; a client on the slave sees a lost link."""
        await self._master.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"PtyPair({self._path!r})"


def open_pty_pair() -> PtyPair:
    """Create a raw-mode pseudo-terminal; the slave is left closed for a client to open.

    Raises:
        ServomexUnsupportedError: on a platform without pseudo-terminals (Windows).
    """
    if sys.platform == "win32":
        raise ServomexUnsupportedError("pseudo-terminals need a POSIX system")
    import tty  # lazily: POSIX only

    master, slave = os.openpty()
    try:
        tty.setraw(slave)  # no echo, no line editing, no CR/LF translation
        path = os.ttyname(slave)
        os.set_blocking(master, False)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return PtyPair(PtyMasterTransport(master, path), path)
