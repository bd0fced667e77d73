"""The one environment holds the IOC stack (FastCS, whose ``fastapi[standard]`` installs
``httpx2``) and the embedded tiled catalog, and both work.

starlette ≥ 1.2's test client imports ``httpx2`` whenever it can, while tiled 0.2.20 builds its
in-process (embedded) client from that test client and wraps it in its own ``httpx`` transport:
with both packages installed, ``open_catalog(dir)`` failed with ``TypeError: Invalid type for
url. Expected str or httpx2.URL, got httpx.URL`` and ``pip check`` said nothing. The pins in
``pyproject.toml`` (starlette < 1.2, fastapi < 0.164) keep the test client on ``httpx``; this
test fails if a dependency change brings the conflict back.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bluesky import RunEngine
from bluesky.plans import count
from ophyd_async.core import StandardReadable, StandardReadableFormat, init_devices, soft_signal_rw

from ophyd_servomex.catalog import close_catalog, open_catalog, subscribe_writer


class _Probe(StandardReadable):
    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.value = soft_signal_rw(float, 20.5, units="%")
        super().__init__(name=name)


def test_ioc_stack_is_importable() -> None:
    """FastCS with both EPICS transports, and the EPICS clients the tests use."""
    for module in ("fastcs", "fastcs.transports.epics.pva", "softioc", "p4p", "aioca", "pvi"):
        assert importlib.util.find_spec(module) is not None, module


def test_embedded_catalog_round_trip_next_to_fastcs(tmp_path: Path) -> None:
    """One run written into and read back from an embedded catalog while fastcs is loaded."""
    import fastcs  # noqa: F401  (loaded, as in an IOC process)

    catalog = open_catalog(tmp_path / "catalog")
    try:
        RE = RunEngine({})
        subscribe_writer(RE, catalog)
        with init_devices():
            probe = _Probe()
        (uid,) = RE(count([probe], num=2))
        run = catalog[uid]
        assert run.metadata["start"]["uid"] == uid
        values = run["primary"].read()["probe-value"]
        assert [float(v) for v in values] == [20.5, 20.5]
    finally:
        close_catalog(catalog)
