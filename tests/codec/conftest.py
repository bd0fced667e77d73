"""Shared fixtures for the codec tests: the two real continuous-mode captures."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IDLE_CAPTURE = FIXTURES / "continuous_4100_idle_5ch.bin"
LIVE_CAPTURE = FIXTURES / "continuous_4100_live_5ch.bin"


@pytest.fixture
def anyio_backend() -> str:
    """Async codec tests (if any) run on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="session")
def idle_capture() -> bytes:
    """The idle capture: 6 LF-terminated frames, 1230 bytes."""
    return IDLE_CAPTURE.read_bytes()


@pytest.fixture(scope="session")
def live_capture() -> bytes:
    """The live capture: 6 LF-terminated frames, 1230 bytes."""
    return LIVE_CAPTURE.read_bytes()


@pytest.fixture(scope="session")
def capture_lines(idle_capture: bytes, live_capture: bytes) -> list[bytes]:
    """All 12 captured frames, idle then live, each without its LF."""
    lines = [*idle_capture.split(b"\n")[:-1], *live_capture.split(b"\n")[:-1]]
    assert len(lines) == 12
    return lines
