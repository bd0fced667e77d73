"""Serve analysers over EPICS PVA and Channel Access from one FastCS process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from fastcs.transports.transport import Transport

from ..codec.models import ChannelInfo, Unit
from .config import IocConfig
from .controller import AnalyserController, default_channels
from .hooks import install_ca, install_pva
from .link import Link

__all__ = ["build_controllers", "serve"]

_LOGGER = logging.getLogger(__name__)


class _Controller(AnalyserController):
    """An analyser controller that settles its channel set when FastCS initialises it."""

    async def initialise(self) -> None:
        """Declared channels, else those ``identify`` finds within ``discover_timeout``,
        else all ten slots (the analyser did not answer in time)."""
        config = self.config
        if config.channels is not None:
            known = {c.channel: c for c in (self.info.channels if self.info else ())}
            infos = tuple(known.get(c, ChannelInfo(c, None, Unit.UNKNOWN)) for c in config.channels)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.identified.wait(), config.discover_timeout)
            if self.info is None:
                _LOGGER.warning(
                    "%s: no answer from %s within %g s; serving all ten channel slots",
                    config.prefix, config.port, config.discover_timeout,
                )  # fmt: skip
            infos = default_channels(self.info)
        self.build_channels(infos)
        if self.info is not None:
            await self.learn(self.info)


def build_controllers(config: IocConfig) -> tuple[list[AnalyserController], list[Link]]:
    """One controller per analyser and one link per port."""
    controllers: dict[str, AnalyserController] = {}
    for analyser in config.analysers:
        controllers[analyser.prefix] = _Controller(
            analyser, allow_calibration=config.allow_calibration
        )
    links = [Link([controllers[a.prefix] for a in members]) for members in config.buses.values()]
    return list(controllers.values()), links


def _ca_transport() -> Any:
    """FastCS's CA transport, with ``iocInit`` run off the event loop.

    ``iocInit`` waits about 0.8 s inside EPICS (little of it CPU); on the loop that held
    up the PVA server and the first frame. Records set while it runs keep the value for
    their first processing, and every input record is processed once more when it is done
    (a record set before its I/O scan started would otherwise show its initial value).
    """
    from fastcs.transports.epics.ca.transport import EpicsCATransport
    from softioc.device import ProcessDeviceSupportIn
    from softioc.device_core import LookupRecordList

    class CATransport(EpicsCATransport):  # type: ignore[misc]
        async def serve(self) -> None:
            await asyncio.to_thread(self._ioc.run, self._loop)
            for _, record in LookupRecordList():
                if isinstance(record, ProcessDeviceSupportIn):
                    record.trigger()
            _LOGGER.info("Channel Access served")

    return CATransport()


def _import_ca() -> None:
    import fastcs.transports.epics.ca.transport  # noqa: F401
    import softioc.device  # noqa: F401


class LateCATransport(Transport):  # type: ignore[misc]
    """Channel Access, brought up once PVA serves: pythonSoftIOC (about 1 s of imports on a
    loaded machine) is imported on a thread while the loop serves PVA and polls the
    analyser, then the records are built from the attributes' current values and alarms."""

    def __init__(self) -> None:
        self._apis: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.transport: Any = None

    def connect(self, controller_apis: list[Any], loop: asyncio.AbstractEventLoop) -> None:
        """Keep what the CA transport will need."""
        self._apis = controller_apis
        self._loop = loop

    async def serve(self) -> None:
        """Import pythonSoftIOC off the loop, build the records, run ``iocInit``."""
        await asyncio.to_thread(_import_ca)
        install_ca()
        self.transport = _ca_transport()
        self.transport.connect(controller_apis=self._apis, loop=self._loop)
        await self.transport.serve()

    def __repr__(self) -> str:
        return f"LateCATransport({self.transport!r})"


def _quiet_fastcs(verbose: int) -> None:
    from fastcs.logging import logger

    logger.remove()
    logger.add(sys.stderr, level="INFO" if verbose > 1 else "WARNING", colorize=False)


async def serve(config: IocConfig, *, verbose: int = 0, ready: asyncio.Event | None = None) -> None:
    """Serve every analyser of ``config`` until SIGINT/SIGTERM or cancellation.

    The links start first, so a reachable analyser's channels are known before the PVs
    are built. ``ready`` is set once the transports are up.
    """
    from fastcs.control_system import FastCS
    from fastcs.transports.epics.pva.transport import EpicsPVATransport

    install_pva()
    _quiet_fastcs(verbose)
    _LOGGER.info("starting: %s", ", ".join(a.prefix for a in config.analysers))
    loop = asyncio.get_running_loop()
    controllers, links = build_controllers(config)
    link_tasks = [loop.create_task(link.run(), name=f"link {link.port}") for link in links]
    fastcs = FastCS(controllers, [EpicsPVATransport(), LateCATransport()], loop=loop)
    main = loop.create_task(fastcs.serve(interactive=False), name="fastcs")
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, main.cancel)
    try:
        if ready is not None:
            while not fastcs.controller_apis and not main.done():  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # FastCS offers no event for "transports built"
            ready.set()
        await main
    except asyncio.CancelledError:
        pass
    finally:
        main.cancel()
        for task in link_tasks:
            task.cancel()
        await asyncio.gather(main, *link_tasks, return_exceptions=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
