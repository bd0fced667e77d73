"""Fixtures for the catalog tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async catalog tests (if any) run on asyncio only."""
    return "asyncio"
