"""A catalog's scan-id source respects a source that is already unique across processes.

``subscribe_writer`` wraps the RunEngine's ``scan_id_source`` in a :class:`ScanIdSource`
that takes the maximum of it and the catalog's highest id. Around the Redis-shared counter
that maximum let two processes compute the same number (seen: both got 47), so an atomic
source is used as it is, whichever of the two was installed first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ophyd_servomex.catalog.location import resolve_location
from ophyd_servomex.catalog.scan_ids import ScanIdSource


class _Counter:
    """A stand-in for the shared counter: ids 5, 6, 7 … whatever the catalog holds."""

    atomic_scan_ids = True

    def __init__(self) -> None:
        self.value = 4

    def next_scan_id(self, md: dict[str, Any]) -> int:
        self.value += 1
        return self.value


class _Catalog:
    """A catalog whose highest scan id is far ahead of the counter."""


@pytest.fixture
def location(tmp_path: Path) -> Any:
    return resolve_location(tmp_path / "catalog")


def test_an_atomic_source_is_used_as_it_is(location: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import ophyd_servomex.catalog.scan_ids as module

    monkeypatch.setattr(module, "latest_scan_id", lambda catalog: 100)
    counter = _Counter()
    source = ScanIdSource(_Catalog(), location, previous=counter.next_scan_id)
    location.directory.mkdir(parents=True, exist_ok=True)
    ids = []
    for _ in range(3):
        ids.append(source({"scan_id": 0}))
        source.release()
    assert ids == [5, 6, 7]  # not 101, 102, 103: the counter alone decides


def test_a_plain_source_still_never_goes_below_the_catalog(
    location: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ophyd_servomex.catalog.scan_ids as module

    monkeypatch.setattr(module, "latest_scan_id", lambda catalog: 100)
    location.directory.mkdir(parents=True, exist_ok=True)
    source = ScanIdSource(_Catalog(), location, previous=lambda md: md["scan_id"] + 1)
    first = source({"scan_id": 3})
    source.release()
    assert first == 101
