"""Fixtures for the simulator tests (helpers live in ``simhelpers.py``)."""

from __future__ import annotations

import pytest
from simhelpers import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
