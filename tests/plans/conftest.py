"""Fixtures for the plan tests: the anyio backend and a RunEngine per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bluesky import RunEngine
from planhelpers import make_run_engine, stop_run_engine


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def RE() -> Iterator[RunEngine]:
    engine = make_run_engine()
    yield engine
    stop_run_engine(engine)
