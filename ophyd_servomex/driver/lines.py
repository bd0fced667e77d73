"""The shared RS485 lines of a :class:`~ophyd_servomex.driver.ServomexManager`.

A port string is opened once, however many analysers sit on it: :class:`LinePool` keeps one
transport, one :class:`~ophyd_servomex.driver.ModbusLine` and so one port owner per port (or
per given :class:`~ophyd_servomex.transport.Transport`), counts the analysers using each,
and closes a port when the last one leaves. Each line is held open by a task of the
manager's task group (:func:`LinePool.acquire` starts it), so the line's own task groups are
entered and left in one task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import cast

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from ..codec.errors import ErrorContext, ServomexConfigurationError
from ..codec.models import ProtocolKind
from ..codec.options import ConnectionOptions
from ..transport import Transport, open_transport
from .modbus import ModbusLine

__all__ = ["LinePool", "SharedLine", "check_line_protocol"]

_LOGGER = logging.getLogger("ophyd_servomex.driver.manager")


@dataclass(eq=False, slots=True)
class SharedLine:
    """One shared port: its transport, Modbus line and the task that keeps them open.

    ``options`` are those of the analyser that opened the line: its protocol, serial
    settings, timeout, idle gap and retries hold for every analyser on it.
    """

    key: str | Transport
    options: ConnectionOptions
    stop: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    modbus: ModbusLine | None = None
    addresses: set[int] = field(default_factory=set)
    users: int = 0

    @property
    def port(self) -> str:
        """The port string (``""`` for a transport without one)."""
        return self.options.port

    @property
    def protocol(self) -> ProtocolKind:
        """The line's Modbus mode."""
        return self.options.protocol


def check_line_protocol(options: ConnectionOptions) -> None:
    """Refuse continuous mode and AUTO: only a Modbus mode can share a line."""
    kind = options.protocol
    if not kind.is_modbus:
        why = (
            "AUTO detection probes the line with its own traffic and cannot run on a shared "
            "line; give the line's Modbus mode"
            if kind is ProtocolKind.AUTO
            else "a continuous-mode analyser broadcasts on its own and must be the only "
            "talker on its line; open it with open_device() instead"
        )
        raise ServomexConfigurationError(
            f"the manager handles Modbus RTU or ASCII analysers only, not {kind.value}: {why}",
            context=ErrorContext(port=options.port or None, protocol=kind.value),
        )


class LinePool:
    """Open lines by port (or transport), shared by the analysers on them."""

    def __init__(self) -> None:
        self._lines: dict[str | Transport, SharedLine] = {}
        self._lock = anyio.Lock()

    @property
    def ports(self) -> tuple[str, ...]:
        """The ports held open, in opening order."""
        return tuple(line.port for line in self._lines.values())

    async def acquire(
        self,
        task_group: anyio.abc.TaskGroup,
        source: str | Transport,
        options: ConnectionOptions,
    ) -> SharedLine:
        """The line for ``source`` (opened in ``task_group`` with ``options`` if new), with
        ``options.address`` taken.

        Raises:
            ServomexConfigurationError: the open line runs another protocol or settings, or
                the address is already used on it.
            ServomexConnectionError: the port cannot be opened.
        """
        port = options.port
        address = options.address
        async with self._lock:
            line = self._lines.get(source)
            if line is None:
                line = SharedLine(source, options)
                await task_group.start(self._serve, line)
                self._lines[source] = line
            else:
                _check_compatible(line, options)
            if address in line.addresses:
                raise ServomexConfigurationError(
                    f"address {address} is already used on {port or 'this line'}: every "
                    "analyser on a multidrop line needs its own slave address",
                    context=options.context,
                )
            line.addresses.add(address)
            line.users += 1
        return line

    async def release(self, line: SharedLine, address: int) -> None:
        """Give ``address`` back; close the line's port when no analyser is left on it."""
        async with self._lock:
            line.addresses.discard(address)
            line.users -= 1
            if line.users > 0:
                return
            line.stop.set()
            await line.done.wait()
            if self._lines.get(line.key) is line:
                del self._lines[line.key]

    def stop_all(self) -> None:
        """Tell every line to close (their tasks end when the manager's task group does)."""
        for line in self._lines.values():
            line.stop.set()

    def clear(self) -> None:
        """Forget every line (after their tasks ended)."""
        self._lines.clear()

    async def _serve(
        self, line: SharedLine, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Hold one line open (its transport, Modbus line and owner) until it is stopped."""
        key = line.key
        options = line.options
        owned = isinstance(key, str)
        transport: anyio.abc.ByteStream = (
            await open_transport(key, options.serial_settings)
            if isinstance(key, str)
            else cast("anyio.abc.ByteStream", key)  # checked by the manager's add()
        )
        started = False
        try:
            async with ModbusLine(
                transport,
                protocol=options.protocol,
                timeout=options.timeout,
                retries=options.retries,
                inter_frame_idle=options.inter_frame_idle,
                port=options.port,
            ) as modbus:
                line.modbus = modbus
                started = True
                task_status.started()
                await line.stop.wait()
        except Exception:
            if not started:
                raise
            _LOGGER.exception("%s: the shared line failed while closing", line.port)
        finally:
            try:
                if owned:
                    with anyio.CancelScope(shield=True):
                        await transport.aclose()
            finally:
                line.done.set()  # only now is the port free for others


def _check_compatible(line: SharedLine, options: ConnectionOptions) -> None:
    opened = line.options
    context = ErrorContext(port=line.port or None, protocol=line.protocol.value)
    if options.protocol is not opened.protocol:
        raise ServomexConfigurationError(
            f"{line.port or 'this line'} is open in {opened.protocol.value}; an analyser on "
            f"the same line cannot use {options.protocol.value}",
            context=context,
        )
    if options.serial_settings is not None and options.serial_settings != opened.serial_settings:
        raise ServomexConfigurationError(
            f"{line.port or 'this line'} is open with {opened.serial_settings}; one line "
            f"cannot also run {options.serial_settings}",
            context=context,
        )
    if options.timeout != opened.timeout:
        _LOGGER.warning(
            "%s: the line's timeout is %s s (set by its first analyser); ignoring %s s",
            line.port,
            opened.timeout,
            options.timeout,
        )
