"""Fixtures for the catalog tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from catalog_fs_helpers import Tmpfs


@pytest.fixture
def anyio_backend() -> str:
    """Async catalog tests (if any) run on asyncio only."""
    return "asyncio"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Tmpfs]]:
    """``tmpfs(name, size)`` mounts a tmpfs of ``size`` at ``tmp_path/name``."""
    mounted: list[Tmpfs] = []

    def mount(name: str, size: str) -> Tmpfs:
        fs = Tmpfs(tmp_path / name, size)
        mounted.append(fs)
        return fs

    yield mount
    for fs in reversed(mounted):
        fs.unmount()
