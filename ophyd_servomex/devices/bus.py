"""``ServomexBus``: several Modbus analysers sharing one RS485 line.

The bus is a small :class:`~ophyd_async.core.Device` that owns the driver's
``ServomexManager`` in its own owner task; each ``ServomexAnalyser(..., bus=bus)`` adds
itself to the manager when it connects (one shared transport per port, transactions
strictly serialised on the line) and removes itself when it disconnects, or when the line
is lost: then every analyser on it lets go, the line closes, and each analyser reconnects
by itself, opening the line again. Create the bus
and its analysers inside one ``init_devices()`` block and all of them connect::

    with init_devices():
        line = ServomexBus("/dev/ttyUSB0", protocol=ProtocolKind.MODBUS_RTU)
        o2 = ServomexAnalyser(bus=line, address=30)
        co = ServomexAnalyser(bus=line, address=31)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ophyd_async.core import Device, DeviceConnector, DeviceMock

from ..codec.errors import (
    ErrorContext,
    ServomexConfigurationError,
    ServomexConnectionError,
)
from ..codec.models import ProtocolKind, SerialSettings
from ..codec.options import DEFAULT_INTER_FRAME_IDLE, ConnectionOptions, parse_protocol
from .analyser_session import AnalyserSession, SessionFactory
from .connect_cache import forget_connect
from .owner_task import OwnerHandle, fail_ready, start_owner

if TYPE_CHECKING:
    from .analyser import ServomexAnalyser

__all__ = ["ServomexBus"]

_LOGGER = logging.getLogger(__name__)
_ANONYMOUS = itertools.count(1)


class _BusConnector(DeviceConnector):
    """Runs the driver's manager in an owner task between connect and disconnect."""

    def __init__(self, options: ConnectionOptions) -> None:
        self.options = options
        """The line's options: its port, framing, serial settings, timeout and idle gap."""
        self.port = options.port
        self.protocol = options.protocol
        self.manager: Any = None
        self.mock_mode = False
        self._owner: OwnerHandle | None = None
        self._failure: BaseException | None = None

    @property
    def context(self) -> ErrorContext:
        return ErrorContext(port=self.port, protocol=self.protocol.value)

    async def connect_mock(self, device: Device, mock: DeviceMock[Any]) -> None:
        self.mock_mode = True
        await super().connect_mock(device, mock)

    async def connect_real(self, device: Device, timeout: float, force_reconnect: bool) -> None:  # noqa: ASYNC109
        self.mock_mode = False
        if self._owner is not None and not self._owner.task.done() and not force_reconnect:
            return
        await self.disconnect()
        self._owner, _ = await start_owner(
            self._own,
            name=f"servomex-bus {self.port}",
            timeout=timeout,
            what="opening the bus",
            context=self.context,
        )
        await super().connect_real(device, timeout, force_reconnect)

    async def _own(self, ready: asyncio.Future[None], stop: asyncio.Event) -> None:
        from ..driver import ServomexManager

        idle = self.options.inter_frame_idle
        try:
            async with ServomexManager(inter_frame_idle=idle) as manager:
                self.manager = manager
                ready.set_result(None)
                await stop.wait()
        except BaseException as exc:
            self._failure = exc
            fail_ready(ready, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.manager = None

    async def disconnect(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            await owner.close()


class ServomexBus(Device):
    """One RS485 line shared by several Modbus analysers (``ServomexAnalyser(bus=...)``).

    ``protocol`` must be Modbus RTU or ASCII (a continuous-mode unit broadcasts on its own
    and cannot share a line). ``timeout`` and ``inter_frame_idle`` apply to every analyser
    on the line.
    """

    _connector: _BusConnector

    def __init__(
        self,
        port: str,
        *,
        protocol: ProtocolKind | str = ProtocolKind.MODBUS_RTU,
        serial_settings: SerialSettings | None = None,
        timeout: float = 1.0,
        inter_frame_idle: float | None = None,
        name: str = "",
    ) -> None:
        kind = parse_protocol(protocol, context=ErrorContext(port=port or None))
        options = ConnectionOptions(
            port,
            protocol=kind,
            serial_settings=serial_settings,
            timeout=timeout,
            inter_frame_idle=(
                DEFAULT_INTER_FRAME_IDLE if inter_frame_idle is None else inter_frame_idle
            ),
        )
        if not kind.is_modbus:
            raise ServomexConfigurationError(
                f"a shared bus needs Modbus RTU or ASCII, not {kind.value}: a continuous-mode "
                "analyser broadcasts on its own and must be the only talker on its line",
                context=ErrorContext(port=port, protocol=kind.value),
            )
        self._attached: list[ServomexAnalyser] = []
        super().__init__(
            name=name,
            connector=_BusConnector(options),
        )

    @property
    def port(self) -> str:
        """The shared port."""
        return self._connector.port

    @property
    def protocol(self) -> ProtocolKind:
        """The line's Modbus framing."""
        return self._connector.protocol

    async def ensure_connected(self, connect_timeout: float) -> None:
        """Connect the bus if it is not yet (cached by ``Device.connect``)."""
        await self.connect(timeout=connect_timeout)

    def session_factory(
        self,
        analyser: ServomexAnalyser,
        *,
        address: int,
        protocol: ProtocolKind,
    ) -> SessionFactory:
        """How ``analyser`` opens its session: add itself to the manager, remove on exit.

        The line's settings (framing, timeout, idle gap) are the bus's, shared by all.
        """
        if protocol is not ProtocolKind.AUTO and protocol is not self.protocol:
            raise ServomexConfigurationError(
                f"an analyser on a {self.protocol.value} bus cannot use {protocol.value}",
                context=ErrorContext(port=self.port, protocol=protocol.value, address=address),
            )
        self._attached.append(analyser)
        connector = self._connector

        @asynccontextmanager
        async def open_session() -> AsyncIterator[AnalyserSession]:
            manager = connector.manager
            if manager is None:
                raise ServomexConnectionError("the bus is not connected", context=connector.context)
            key = analyser.name or f"{self.name or 'bus'}-analyser{next(_ANONYMOUS)}"
            session: AnalyserSession = await manager.add(
                key,
                connector.port,
                protocol=connector.protocol,
                address=address,
                serial_settings=connector.options.serial_settings,
                timeout=connector.options.timeout,
            )
            try:
                yield session
            finally:
                with contextlib.suppress(Exception):
                    await manager.remove(key)

        return open_session

    def line_lost(self, error: BaseException, origin: Any = None) -> None:
        """One analyser lost the shared port: every other one on the line lets go too, so
        the line closes and each reconnects by itself (see ``ServomexAnalyser``)."""
        for analyser in tuple(self._attached):
            connector = analyser._connector
            if connector is not origin and connector.connected:
                connector.link_lost(error)

    async def disconnect(self) -> None:
        """Disconnect every analyser on the bus, then close the line."""
        for analyser in self._attached:
            await analyser.disconnect()
        await self._connector.disconnect()
        forget_connect(self)  # so the next connect() opens the line again
