"""Start-up code for bluesky-queueserver: Servomex analysers, the catalog, annotated plans.

Start the manager with this directory as its start-up directory (see docs/facility.md)::

    SERVOMEX_PORT=/dev/ttyUSB0 SERVOMEX_ADDRESS=30 \\
    start-re-manager --startup-dir example_plans/queueserver \\
        --existing-plans-devices /var/lib/qserver/existing_plans_and_devices.yaml \\
        --update-existing-plans-devices ENVIRONMENT_OPEN \\
        --redis-addr 127.0.0.1:6379

The worker runs this file when the environment opens. Settings, all from the environment:

``SERVOMEX_PORT``
    The analyser's port (``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://…``, a
    simulator's pty); comma-separated for several analysers. Required.
``SERVOMEX_NAME``
    Device names, comma-separated, one per port (default ``gas``, ``gas2``, …). Plans take
    these names.
``SERVOMEX_PROTOCOL``
    ``auto`` (default), ``modbus-rtu``, ``modbus-ascii`` or ``continuous``; one for all, or
    one per port.
``SERVOMEX_ADDRESS``
    Modbus address, one for all or one per port (default 30, the bench unit's).
``SERVOMEX_CALIBRATION_POLL``
    Seconds between progress reads during an autocalibration (default 0.5).
``OPHYD_SERVOMEX_CATALOG`` / ``TILED_API_KEY``
    Where runs go: a directory (embedded catalog) or a tiled server URI, and its key.
``OPHYD_SERVOMEX_REDIS`` / ``OPHYD_SERVOMEX_REDIS_PREFIX``
    When set, ``RE.md`` lives in Redis and scan ids come from one atomic counter shared with
    every other RunEngine using the same prefix (:mod:`ophyd_servomex.catalog.shared_md`).

The plans the queue accepts are the wrappers below. Their analyser parameters are annotated
with the names of the analysers built here, so the queue server refuses a mistyped device
name when the plan is queued, not when it runs.
"""

# no "from __future__ import annotations": the queue server reads the annotations as types
import os
from collections.abc import Generator
from typing import Any

import bluesky.plans as bp
from bluesky import RunEngine
from bluesky_queueserver import parameter_annotation_decorator
from ophyd_async.core import init_devices

import ophyd_servomex.plans as servomex_plans
from ophyd_servomex import ProtocolKind, ServomexAnalyser
from ophyd_servomex.catalog import open_catalog, subscribe_writer

Plan = Generator[Any, Any, Any]


def _setting(name: str, count: int, default: str) -> list[str]:
    """``name`` from the environment as ``count`` comma-separated values (one repeats)."""
    values = [v.strip() for v in os.environ.get(name, default).split(",")]
    if len(values) == 1:
        values *= count
    if len(values) != count or not all(values):
        raise SystemExit(f"{name} needs one value or one per port ({count}), not {values}")
    return values


_ports = [p.strip() for p in os.environ.get("SERVOMEX_PORT", "").split(",") if p.strip()]
if not _ports:
    raise SystemExit("set SERVOMEX_PORT to the analyser's port (comma-separated for several)")
_names = _setting("SERVOMEX_NAME", len(_ports), ",".join(
    "gas" if i == 0 else f"gas{i + 1}" for i in range(len(_ports))
))  # fmt: skip
_protocols = _setting("SERVOMEX_PROTOCOL", len(_ports), ProtocolKind.AUTO.value)
_addresses = _setting("SERVOMEX_ADDRESS", len(_ports), "30")
_poll = float(os.environ.get("SERVOMEX_CALIBRATION_POLL", "0.5"))

# the RunEngine first: ophyd-async devices connect in its event loop
RE = RunEngine()
catalog = open_catalog()  # OPHYD_SERVOMEX_CATALOG, else the user data directory
if os.environ.get("OPHYD_SERVOMEX_REDIS"):
    from ophyd_servomex.catalog.shared_md import subscribe_shared

    subscription, shared_md = subscribe_shared(RE, catalog)
else:
    subscription = subscribe_writer(RE, catalog)

analysers: dict[str, ServomexAnalyser] = {}
with init_devices():
    for _port, _name, _protocol, _address in zip(
        _ports, _names, _protocols, _addresses, strict=True
    ):
        analysers[_name] = ServomexAnalyser(
            _port,
            protocol=ProtocolKind(_protocol),
            address=int(_address),
            calibration_poll_period=_poll,
        )
    # init_devices connects (and names) the devices it finds among the module's variables:
    # each analyser becomes one, under its name, which is also the name plans are given
    globals().update(analysers)

ANALYSER_NAMES = sorted(analysers)
_ANALYSER = {"Analyser": ANALYSER_NAMES}
_MD = {"description": "Extra start-document metadata.", "annotation": "typing.Optional[dict]"}


@parameter_annotation_decorator({
    "description": "Read every channel of the analysers num times (bluesky's count).",
    "parameters": {
        "detectors": {
            "description": "Analysers to read (their names).",
            "annotation": "typing.List[Analyser]",
            "devices": _ANALYSER,
        },
        "num": {"description": "Number of readings (events).", "annotation": "int"},
        "delay": {"description": "Seconds between readings.", "annotation": "float"},
        "md": _MD,
    },
})  # fmt: skip
def count(
    detectors: list[Any], num: int = 1, delay: float = 0.0, md: dict[str, Any] | None = None
) -> Plan:
    """``bluesky.plans.count`` on Servomex analysers."""
    return (yield from bp.count(detectors, num=num, delay=delay, md=md))


@parameter_annotation_decorator({
    "description": "Record every frame of the analysers for a while, one run.",
    "parameters": {
        "analysers": {
            "description": "Analysers to monitor (their names).",
            "annotation": "typing.List[Analyser]",
            "devices": _ANALYSER,
        },
        "duration": {"description": "Seconds to record.", "annotation": "float"},
        "md": _MD,
    },
})  # fmt: skip
def monitor_broadcast(
    analysers: list[Any], duration: float, md: dict[str, Any] | None = None
) -> Plan:
    """:func:`ophyd_servomex.plans.monitor_broadcast`."""
    return (yield from servomex_plans.monitor_broadcast(analysers, duration, md=md))


@parameter_annotation_decorator({
    "description": (
        "Autocalibrate one group, recorded as a run. Flows calibration gas into the "
        "analyser: only queued with confirm=True. Modbus mode only."
    ),
    "parameters": {
        "analyser": {
            "description": "The analyser (its name).",
            "annotation": "Analyser",
            "devices": _ANALYSER,
        },
        "group": {"description": "Autocalibration group, 1-4.", "annotation": "int"},
        "confirm": {
            "description": "Must be true: the calibration flows gas into the process.",
            # only True validates: the queue refuses the plan without it, before it runs
            "annotation": "typing.Literal[True]",
        },
        "poll_period": {
            "description": "Seconds between progress reads (default: the analyser's).",
            "annotation": "typing.Optional[float]",
        },
        "timeout": {
            "description": "Give up after this many seconds (default: no limit).",
            "annotation": "typing.Optional[float]",
        },
        "md": _MD,
    },
})  # fmt: skip
def calibration_run(
    analyser: Any,
    group: int,
    confirm: bool,
    poll_period: float | None = None,
    timeout: float | None = None,
    md: dict[str, Any] | None = None,
) -> Plan:
    """:func:`ophyd_servomex.plans.calibration_run`; only ``confirm=True`` is queued."""
    return (
        yield from servomex_plans.calibration_run(
            analyser, group, confirm=confirm, poll_period=poll_period, timeout=timeout, md=md
        )
    )
