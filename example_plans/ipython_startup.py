"""IPython start-up file for a beamline session with Servomex analysers.

Copy (or link) it into your IPython profile and set where the analyser is::

    cp example_plans/ipython_startup.py ~/.ipython/profile_default/startup/50-servomex.py
    SERVOMEX_PORT=/dev/ttyUSB0 SERVOMEX_ADDRESS=30 ipython --matplotlib
    SERVOMEX_SIM=1 ipython --matplotlib          # a simulated analyser instead

or load it into a running session with ``%run -i example_plans/ipython_startup.py --sim``.
Run as a plain script (``python example_plans/ipython_startup.py --sim``) it sets everything
up, takes three readings as a check, and exits.

Settings (environment, or the same options on the command line when run as a script):
``SERVOMEX_PORT`` (``--port``), ``SERVOMEX_PROTOCOL`` (``--protocol``; default auto),
``SERVOMEX_ADDRESS`` (``--address``; default 30), ``SERVOMEX_SIM=1`` (``--sim``), and
``OPHYD_SERVOMEX_CATALOG`` (``--catalog``) for where runs are stored.

The session then has: ``RE`` (its progress bars drawn), ``bec`` (BestEffortCallback: live
tables and plots), ``catalog`` (runs written to it as they happen), ``gas`` (the analyser),
and the plans ``count``, ``scan``, ``calibrate``, ``monitor_broadcast``, ``bps``. Try::

    RE(count([gas], num=10, delay=1))
    RE(monitor_broadcast([gas], 30))
    RE(calibrate(gas, 1, confirm=True))      # flows calibration gas!
    get_run(catalog, -1)["primary"].read()
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import sys


def _in_ipython() -> bool:
    try:
        get_ipython  # type: ignore[name-defined]  # noqa: B018  (an IPython builtin)
    except NameError:
        return False
    return True


def _settings() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Servomex beamline session")
    parser.add_argument("--port", default=os.environ.get("SERVOMEX_PORT"))
    parser.add_argument("--protocol", default=os.environ.get("SERVOMEX_PROTOCOL", "auto"))
    parser.add_argument(
        "--address", type=int, default=int(os.environ.get("SERVOMEX_ADDRESS", "30"))
    )
    parser.add_argument("--catalog", default=None)
    parser.add_argument(
        "--sim", action="store_true", default=os.environ.get("SERVOMEX_SIM", "") not in ("", "0")
    )
    # As an IPython start-up file sys.argv is IPython's own: read options only when this file
    # is the program (a script, or `%run -i ipython_startup.py --sim`).
    ours = os.path.basename(sys.argv[0]) == os.path.basename(globals().get("__file__", ""))
    settings, _ = parser.parse_known_args(sys.argv[1:] if ours else [])
    if not settings.port and not settings.sim:
        parser.error("set SERVOMEX_PORT (or --port), or SERVOMEX_SIM=1 (or --sim)")
    return settings


__all__ = [  # what the session gets
    "RE",
    "bec",
    "bps",
    "calibrate",
    "catalog",
    "count",
    "gas",
    "get_run",
    "monitor_broadcast",
    "run_table",
    "scan",
    "subscription",
]

_settings_now = _settings()

import bluesky.plan_stubs as bps  # noqa: E402
from bluesky import RunEngine  # noqa: E402
from bluesky.callbacks.best_effort import BestEffortCallback  # noqa: E402
from bluesky.plans import count, scan  # noqa: E402
from bluesky.run_engine import call_in_bluesky_event_loop  # noqa: E402
from bluesky.utils import ProgressBarManager  # noqa: E402
from ophyd_async.core import init_devices  # noqa: E402

from ophyd_servomex import ProtocolKind, ServomexAnalyser  # noqa: E402
from ophyd_servomex.catalog import (  # noqa: E402
    catalog_location,
    get_run,
    open_catalog,
    run_table,
    subscribe_writer,
)
from ophyd_servomex.plans import calibrate, monitor_broadcast  # noqa: E402

if _settings_now.sim:
    from ophyd_servomex.sim import SimConfig, SimulatorThread

    _simulator = SimulatorThread(SimConfig(mode=ProtocolKind.MODBUS_RTU, time_scale=60.0))
    _simulator.start()
    atexit.register(_simulator.stop)  # registered first, so it runs after the disconnect
    _port = _simulator.port
else:
    _port = _settings_now.port

RE = RunEngine()
RE.waiting_hook = ProgressBarManager()  # progress bars for calibrations and moves
bec = BestEffortCallback()
RE.subscribe(bec)
if not _in_ipython():
    bec.disable_plots()  # a plain script has no window to draw in

catalog = open_catalog(_settings_now.catalog)
subscription = subscribe_writer(RE, catalog)  # every run lands in the catalog, journaled

with init_devices():
    gas = ServomexAnalyser(
        _port, protocol=ProtocolKind(_settings_now.protocol), address=_settings_now.address
    )


def _disconnect() -> None:
    # on RE's own loop: another RunEngine made later in the process would own the global one
    asyncio.run_coroutine_threadsafe(gas.disconnect(), RE.loop).result(timeout=10)


atexit.register(_disconnect)

if _in_ipython():
    from bluesky.run_engine import autoawait_in_bluesky_event_loop
    from bluesky.utils import register_transform

    autoawait_in_bluesky_event_loop()  # `await gas.read()` runs on the RunEngine's loop
    register_transform("RE", prefix="<")  # `<count([gas])` is RE(count([gas]))

_protocol = call_in_bluesky_event_loop(gas.protocol.get_value())
_channels = ", ".join(c.value for c in gas.channel_ids)
print(f"gas: {_protocol} analyser on {_port}, channels {_channels}")
print(f"catalog: {catalog_location(catalog)}; the next scan id is {subscription.scan_id + 1}")
print("ready: RE, bec, catalog, gas, count, scan, calibrate, monitor_broadcast, bps, get_run")

if __name__ == "__main__" and not _in_ipython():
    # run as a plain script: check the set-up end to end, then leave
    (_uid,) = RE(count([gas], num=3))
    print(f"check: {len(run_table(get_run(catalog, _uid)))} events in the catalog")
