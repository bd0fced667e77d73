# mypy: disable-error-code="no-untyped-call"
# (bluesky's RunEngine, callbacks and IPython helpers carry no annotations)
"""IPython start-up file for a beamline session with Servomex analysers.

Copy (or link) it into your IPython profile and set where the analyser is::

    cp example_plans/ipython_startup.py ~/.ipython/profile_default/startup/50-servomex.py
    SERVOMEX_PORT=/dev/ttyUSB0 SERVOMEX_ADDRESS=30 ipython --matplotlib
    SERVOMEX_SIM=1 ipython --matplotlib          # a simulated analyser instead

or load it into a running session with ``%run -i example_plans/ipython_startup.py --sim``.
Run as a plain script (``python example_plans/ipython_startup.py --sim``) it sets everything
up, takes three readings as a check, and exits.

Settings (environment, or the same options on the command line when run as a script):
``SERVOMEX_PORT`` (``--port``), ``SERVOMEX_PROTOCOL`` (``--protocol``: auto, continuous,
modbus-rtu or rtu, modbus-ascii or ascii; default auto), ``SERVOMEX_ADDRESS`` (``--address``;
default 30), ``SERVOMEX_SIM=1`` (``--sim``; an explicit protocol picks the simulator's mode),
and ``OPHYD_SERVOMEX_CATALOG`` (``--catalog``) for where runs are stored.

The session then has: ``RE`` (its progress bars drawn), ``bec`` (BestEffortCallback: live
tables), ``plots`` (live plots of every named channel, "Oxygen [%]"; ``plots.disable()``
turns them off), ``catalog`` (runs
written to it as they happen), ``gas`` (the analyser), and the plans ``count``, ``scan``,
``calibrate``, ``monitor_broadcast``, ``bps``. Try::

    RE(count([gas], num=10, delay=1))
    RE(monitor_broadcast([gas], 30))
    RE(calibrate(gas, 1, confirm=True))      # flows calibration gas!
    get_run(catalog, -1)["primary"].read()

On exit the analyser is disconnected (its port closed) and says so.

The live plots are :class:`ChannelPlots`, not BestEffortCallback's: those redraw one large
figure once per plotted field for every event, which made a 10-point count 13 times slower
with plots than without. Importing this file as a module (not as ``__main__``) defines
:class:`ChannelPlots` and starts nothing.
"""

from __future__ import annotations

import argparse
import atexit
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from bluesky.callbacks.mpl_plotting import QtAwareCallback

PROTOCOL_ALIASES = {"rtu": "modbus-rtu", "ascii": "modbus-ascii"}


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
    protocol = settings.protocol.strip().lower()
    settings.protocol = PROTOCOL_ALIASES.get(protocol, protocol)
    return settings


def disconnect_at_exit(device: Any, loop: Any, port: str) -> Callable[[], None]:
    """Register (and return) an exit hook that disconnects ``device`` on ``loop``.

    Everything the hook needs is bound here, in its closure: IPython empties the session's
    namespace when it exits, before ``atexit`` hooks run, so a hook that looked up
    ``asyncio``, ``gas`` or ``RE`` as globals would fail with ``NameError``.
    """
    import asyncio
    import sys

    def disconnect() -> None:
        try:
            asyncio.run_coroutine_threadsafe(device.disconnect(), loop).result(timeout=10)
        except Exception as exc:  # report, but let the other exit hooks run
            message = f"disconnect failed: {type(exc).__name__}: {exc}"
        else:
            message = f"disconnected from {port}"
        print(f"{device.name}: {message}", file=sys.stderr, flush=True)

    atexit.register(disconnect)
    return disconnect


class ChannelPlots(QtAwareCallback):
    """Live plots of the hinted fields of a run's primary stream, one axes per channel.

    Each axes is labelled with the channel's name and unit from the run's own documents
    ("Oxygen [%]"); the x axis is the scan's dimension (time since the start for ``count``).
    A channel without a name (an unused mA output) gets an axes only once its value moves.
    One figure is reused for every run, cleared at its start. It is redrawn at most every
    ``min_interval`` seconds and for at most ``budget`` of the run's time (a slow backend
    draws less often), and always at the end of the run, so plotting cannot hold up the scan.
    """

    def __init__(
        self, *, min_interval: float = 0.2, budget: float = 0.2, figure_name: str = "servomex"
    ) -> None:
        super().__init__()
        self.min_interval = min_interval
        self.budget = budget
        self.figure_name = figure_name
        self.figure: Any = None
        self.enabled = True
        """False: runs are not plotted (from their next start or descriptor on)."""
        self.draws = 0
        """Figure redraws requested since this callback was made."""
        self._start: Mapping[str, Any] = {}
        self._descriptor: str | None = None
        self._x_key = "time"
        self._x_label: str | None = None
        self._channels: list[dict[str, Any]] = []
        self._x: list[float] = []
        self._shown: list[dict[str, Any]] = []
        self._last_draw = -math.inf
        self._draw_cost = 0.0

    # --- documents -----------------------------------------------------------------------

    def start(self, doc: Mapping[str, Any]) -> None:
        """A new run: forget the previous one."""
        self._start = doc
        self._descriptor = None
        self._channels = []
        self._shown = []
        self._x = []
        dimensions = doc.get("hints", {}).get("dimensions", [])
        self._x_key = "time"
        if len(dimensions) == 1 and dimensions[0][1] == "primary" and len(dimensions[0][0]) == 1:
            self._x_key = dimensions[0][0][0]

    def descriptor(self, doc: Mapping[str, Any]) -> None:
        """The primary stream's hinted numeric fields become the channels."""
        if not self.enabled or doc.get("name") != "primary" or self._descriptor is not None:
            return
        self._descriptor = doc["uid"]
        data_keys = doc["data_keys"]
        self._x_label = self._label_of(doc, self._x_key) if self._x_key in data_keys else None
        for hints in doc.get("hints", {}).values():
            for key in hints.get("fields", []):
                if key == self._x_key or data_keys.get(key, {}).get("dtype") not in (
                    "number",
                    "integer",
                ):
                    continue
                name = self._name_of(doc, key)
                label = self._label_of(doc, key, name)
                self._channels.append(
                    {"key": key, "label": label, "show": name != "", "first": None, "y": []}
                )

    def event(self, doc: Mapping[str, Any]) -> None:  # type: ignore[override]  # (unused)
        """Add the event's values; redraw when it is time to."""
        if doc.get("descriptor") != self._descriptor or not self._channels:
            return
        data = doc["data"]
        if self._x_key == "time":
            self._x.append(doc["time"] - self._start.get("time", doc["time"]))
        else:
            self._x.append(float(data.get(self._x_key, math.nan)))
        moved = False
        for channel in self._channels:
            value = data.get(channel["key"])
            y = math.nan if value is None else float(value)
            channel["y"].append(y)
            if not channel["show"] and math.isfinite(y):  # unnamed: shown once it moves
                if channel["first"] is None:
                    channel["first"] = y
                elif y != channel["first"]:
                    channel["show"] = moved = True
        wanted = [c for c in self._channels if c["show"]]
        if wanted and (moved or not self._shown):
            self._build(wanted)
        for channel in self._shown:
            channel["line"].set_data(self._x, channel["y"])
        now = time.monotonic()
        if now - self._last_draw >= max(self.min_interval, self._draw_cost / self.budget):
            self._draw()

    def stop(self, doc: Mapping[str, Any]) -> None:
        """The end of the run: draw everything received."""
        if self._shown:
            self._draw()

    def disable(self) -> None:
        """Plot nothing until :meth:`enable` (like ``bec.disable_plots()``)."""
        self.enabled = False

    def enable(self) -> None:
        """Plot the next runs again."""
        self.enabled = True

    # --- helpers -------------------------------------------------------------------------

    @staticmethod
    def _name_of(doc: Mapping[str, Any], key: str) -> str:
        """A Servomex channel's display name (``gas-i1-value`` → ``Oxygen``), ``""`` for an
        unnamed channel, else the field itself."""
        if not key.endswith("-value"):
            return key
        obj = doc["data_keys"][key].get("object_name", "")
        config = doc.get("configuration", {}).get(obj, {}).get("data", {})
        name_key = key.removesuffix("value") + "display_name"
        if name_key not in config:
            return key
        return str(config[name_key])

    @staticmethod
    def _label_of(doc: Mapping[str, Any], key: str, name: str | None = None) -> str:
        """``Oxygen [%]``; a channel without a name is labelled by its id (``E1 [mA]``),
        any other field (``name`` None) by its key."""
        if name is None:
            name = key
        elif name == "":
            name = key.removesuffix("-value").rsplit("-", 1)[-1].upper()
        units = doc["data_keys"].get(key, {}).get("units") or ""
        return f"{name} [{units}]" if units else name

    def _build(self, wanted: list[dict[str, Any]]) -> None:
        import matplotlib.pyplot as plt

        if self.figure is None or not plt.fignum_exists(self.figure.number):
            self.figure = plt.figure(self.figure_name)
        figure = self.figure
        figure.clear()
        rows = max(1, len(wanted))
        figure.set_size_inches(7.0, 1.2 + 1.8 * rows, forward=True)
        axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
        figure.subplots_adjust(left=0.14, right=0.97, top=1 - 0.5 / (1.2 + 1.8 * rows))
        start = self._start
        figure.suptitle(f"scan {start.get('scan_id', '?')}: {start.get('plan_name', '')}")
        for ax, channel in zip(axes, wanted, strict=False):
            ax.set_ylabel(channel["label"])
            (channel["line"],) = ax.plot([], [], marker=".", linewidth=1)
        x_label = "time since start [s]" if self._x_key == "time" else self._x_label
        axes[-1].set_xlabel(x_label or self._x_key)
        self._shown = wanted
        self._last_draw = -math.inf

    def _draw(self) -> None:
        if self.figure is None:
            return
        for channel in self._shown:
            ax = channel["line"].axes
            ax.relim()
            ax.autoscale_view()
        started = time.monotonic()
        self.figure.canvas.draw_idle()
        self.draws += 1
        self._last_draw = time.monotonic()
        self._draw_cost = self._last_draw - started

    @property
    def labels(self) -> list[str]:
        """The y labels of the figure's axes, top to bottom (the last run plotted)."""
        return [] if self.figure is None else [ax.get_ylabel() for ax in self.figure.axes]


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
    "plots",
    "run_table",
    "scan",
    "subscription",
]

if __name__ == "__main__":  # a start-up file, `%run -i`, or a script: set the session up
    _settings_now = _settings()

    import bluesky.plan_stubs as bps
    from bluesky import RunEngine
    from bluesky.callbacks.best_effort import BestEffortCallback
    from bluesky.plans import count, scan
    from bluesky.run_engine import call_in_bluesky_event_loop
    from bluesky.utils import ProgressBarManager
    from ophyd_async.core import init_devices

    from ophyd_servomex import ProtocolKind, ServomexAnalyser
    from ophyd_servomex.catalog import (
        catalog_location,
        get_run,
        open_catalog,
        run_table,
        subscribe_writer,
    )
    from ophyd_servomex.plans import calibrate, monitor_broadcast

    _protocol = ProtocolKind(_settings_now.protocol)
    _period = 2.0
    if _settings_now.sim:
        from ophyd_servomex.sim import SimConfig, SimulatorThread

        # an explicit protocol picks the simulator's mode; AUTO finds Modbus RTU
        _mode = ProtocolKind.MODBUS_RTU if _protocol is ProtocolKind.AUTO else _protocol
        _period = 0.5
        _simulator = SimulatorThread(SimConfig(mode=_mode, time_scale=60.0, period=_period))
        _simulator.start()
        atexit.register(_simulator.stop)  # registered first, so it runs after the disconnect
        _port = _simulator.port
    else:
        _port = _settings_now.port

    RE = RunEngine()
    RE.waiting_hook = ProgressBarManager()  # type: ignore[assignment]  # progress bars
    bec = BestEffortCallback()
    bec.disable_plots()  # tables only: `plots` draws the channels, far faster
    RE.subscribe(bec)
    plots = ChannelPlots()
    if _in_ipython():  # a plain script has no window to draw in
        RE.subscribe(plots)

    catalog = open_catalog(_settings_now.catalog)
    subscription = subscribe_writer(RE, catalog)  # every run lands in the catalog, journaled

    with init_devices():
        gas = ServomexAnalyser(
            _port, protocol=_protocol, address=_settings_now.address, expected_period=_period
        )

    # on RE's own loop: another RunEngine made later in the process would own the global one
    disconnect_at_exit(gas, RE.loop, _port)

    if _in_ipython():
        from bluesky.run_engine import autoawait_in_bluesky_event_loop
        from bluesky.utils import register_transform

        autoawait_in_bluesky_event_loop()  # `await gas.read()` runs on the RunEngine's loop
        register_transform("RE", prefix="<")  # `<count([gas])` is RE(count([gas]))

    _found = call_in_bluesky_event_loop(gas.protocol.get_value())
    _channels = ", ".join(c.value for c in gas.channel_ids)
    print(f"gas: {_found} analyser on {_port}, channels {_channels}")
    print(f"catalog: {catalog_location(catalog)}; the next scan id is {subscription.scan_id + 1}")
    print(
        "ready: RE, bec, catalog, gas, count, scan, calibrate, monitor_broadcast, bps, get_run, "
        "plots"
    )

    if not _in_ipython():
        # run as a plain script: check the set-up end to end, then leave
        (_uid,) = RE(count([gas], num=3))  # type: ignore[misc]  # a tuple of run uids
        print(f"check: {len(run_table(get_run(catalog, _uid)))} events in the catalog")
