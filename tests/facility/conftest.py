"""Fixtures for the facility tests: services on loopback, started once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# --- Redis (queue server, shared RunEngine metadata): see services.py ----------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One ``redis-server`` on 127.0.0.1 at a private port for the session."""
    from services import RedisServer, skip_unless_installed

    skip_unless_installed("redis")
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    try:
        yield server
    finally:
        server.stop()


# --- EPICS (the IOC tests): see epics_helpers.py ------------------------------------------

from epics_helpers import calibration_ioc, epics_ports, facility_ioc  # noqa: E402, F401
