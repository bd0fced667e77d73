"""The link: the one task that owns an analyser's port (or a shared RS485 bus) for the IOC,
polls, publishes every frame to the controllers, and reconnects by itself.

One :class:`Link` per port. A port with one analyser opens it through the driver's
:class:`~ophyd_servomex.driver.Analyzer` (any mode, AUTO included); a port shared by
several (an RS485 bus, Modbus only) opens one :class:`~ophyd_servomex.driver.ModbusLine`
and one ``Analyzer`` per address on it. The analysers are entered and left in the link's
own task (their task groups live there).

Modbus: one sweep per poll period (``P:PollPeriod``); a sweep that does not answer within
``max(poll period, timeout)`` marks the PVs INVALID at once. Continuous: every broadcast
frame; none within ``timeout + expected_period`` marks them INVALID. Three missed polls in a
row, or a lost port, close the link; it reopens after 1 s, then 2 s, up to 5 s between tries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack

import anyio

from ..codec.errors import ServomexConnectionError, ServomexError
from ..codec.models import ProtocolKind
from ..driver import Analyzer, ModbusLine, PortOwner
from ..transport import open_transport
from .controller import AnalyserController

__all__ = ["MAX_MISSES", "Link"]

_LOGGER = logging.getLogger(__name__)

MAX_MISSES = 3
"""Polls in a row without a frame before the link closes the port and reopens it."""

_BACKOFF = (1.0, 2.0, 5.0)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    message = exc.message if isinstance(exc, ServomexError) else str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class Link:
    """Owns one port for one or more :class:`AnalyserController` (see the module doc)."""

    def __init__(self, controllers: Sequence[AnalyserController]) -> None:
        if not controllers:
            raise ValueError("a link needs at least one analyser")
        self.controllers = tuple(controllers)
        self.port = controllers[0].config.port
        self.attempts = 0

    async def run(self) -> None:
        """Open, poll, and reopen after any failure, until cancelled."""
        while True:
            try:
                await self._session()
            except Exception as exc:  # any failure: report it, reopen
                message = _describe(exc)
                level = logging.WARNING if self.attempts == 0 else logging.INFO
                _LOGGER.log(level, "%s: link down: %s", self.port, message)
                for controller in self.controllers:
                    await controller.link_down(message)
            delay = _BACKOFF[min(self.attempts, len(_BACKOFF) - 1)]
            self.attempts += 1
            await anyio.sleep(delay)
            for controller in self.controllers:
                await controller.reconnecting()

    async def _session(self) -> None:
        async with AsyncExitStack() as stack:
            if len(self.controllers) == 1:
                config = self.controllers[0].config
                analysers = [
                    await stack.enter_async_context(
                        Analyzer(
                            config.port,
                            protocol=config.protocol,
                            address=config.address,
                            serial_settings=config.serial_settings,
                            timeout=config.timeout,
                            expected_period=config.expected_period,
                            inter_frame_idle=config.inter_frame_idle,
                            identify=False,
                            name=config.prefix,
                        )
                    )
                ]
            else:
                analysers = await self._open_bus(stack)
            _LOGGER.info("%s: open (%s)", self.port, analysers[0].protocol.value)
            self.attempts = 0
            async with anyio.create_task_group() as group:
                for controller, analyser in zip(self.controllers, analysers, strict=True):
                    await controller.link_up(analyser)
                    group.start_soon(self._poll, controller, analyser)

    async def _open_bus(self, stack: AsyncExitStack) -> list[Analyzer]:
        first = self.controllers[0].config
        transport = await open_transport(first.port, first.serial_settings)
        stack.push_async_callback(transport.aclose)
        owner = await stack.enter_async_context(
            PortOwner(port=first.port, protocol=first.protocol.value)
        )
        line = await stack.enter_async_context(
            ModbusLine(
                transport,
                protocol=first.protocol,
                timeout=first.timeout,
                inter_frame_idle=first.inter_frame_idle,
                owner=owner,
                port=first.port,
            )
        )
        analysers = []
        for controller in self.controllers:
            config = controller.config
            analysers.append(
                await stack.enter_async_context(
                    Analyzer(
                        line,
                        protocol=config.protocol,
                        address=config.address,
                        timeout=config.timeout,
                        identify=False,
                        name=config.prefix,
                    )
                )
            )
        return analysers

    async def _poll(self, controller: AnalyserController, analyser: Analyzer) -> None:
        """Identify (until it works), then poll forever; a lost port ends the session."""
        config = controller.config
        misses = 0
        continuous = analyser.protocol is ProtocolKind.CONTINUOUS_ASCII
        while True:
            started = time.monotonic()
            period = controller.poll_period.get()
            # Before the first frame every PV is INVALID already, and the first polls race
            # FastCS building the PVs on this loop: only the driver's own timeouts apply.
            first = controller.frames.get() == 0
            limit = None if continuous or first else max(period, config.timeout)
            try:
                if analyser.info is None:  # bounded by the driver's own timeouts
                    await controller.learn(await analyser.identify())
                    started = time.monotonic()
                with anyio.fail_after(limit):
                    frame = await analyser.poll()
            except ServomexConnectionError:
                raise
            except (ServomexError, TimeoutError) as exc:
                misses += 1
                message = (
                    f"no answer within {limit:g} s"
                    if type(exc) is TimeoutError and limit is not None
                    else _describe(exc)
                )
                _LOGGER.info("%s: poll failed (%d in a row): %s", config.prefix, misses, message)
                await controller.poll_failed(message)
                if misses >= MAX_MISSES:
                    raise ServomexConnectionError(
                        f"{MAX_MISSES} polls in a row failed ({message}); reopening the port",
                        context=controller.context,
                    ) from exc
            else:
                misses = 0
                await controller.publish(frame, analyser)
            if not continuous:
                await anyio.sleep(max(0.0, period - (time.monotonic() - started)))
