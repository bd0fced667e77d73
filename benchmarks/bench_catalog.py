"""RunEngine → TiledWriter into the embedded catalog, as a ratio to an in-memory list.

One RunEngine runs the same plan — ``count([analyser], num=N)`` on a ``ServomexAnalyser``
connected in mock mode (the bench unit's five channels, every field of the real device,
no I/O) — with one subscriber at a time, the cases interleaved round by round:

* ``list``: the documents appended to a Python list, the floor a RunEngine costs;
* ``journaled``: :func:`ophyd_servomex.catalog.subscribe_writer`'s writer (a write-ahead
  journal, then ``TiledWriter`` in batches of 100) into an embedded SQLite catalog;
* ``bare``: ``bluesky_tiled_plugins.TiledWriter`` alone, same catalog, same batch size.

``journaled ÷ list`` is what writing to the catalog costs a run; ``journaled ÷ bare`` what
the journal adds to the library's own writer.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._harness import Result, side_by_side

BATCH_SIZE = 100


def _events(quick: bool) -> int:
    return 50 if quick else 1000


def run(quick: bool) -> list[Result]:
    """Events/s into the catalog (journaled and bare writer) as ratios to a list."""
    import warnings

    from bluesky import RunEngine
    from bluesky.plans import count
    from bluesky_tiled_plugins import TiledWriter
    from ophyd_async.core import init_devices

    from ophyd_servomex.catalog import close_catalog, open_catalog, subscribe_writer
    from ophyd_servomex.devices import ServomexAnalyser

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    num = _events(quick)
    loop = asyncio.new_event_loop()
    RE = RunEngine({}, loop=loop)
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as directory:
        catalog = open_catalog(Path(directory) / "catalog")
        try:
            with init_devices(mock=True):
                analyser = ServomexAnalyser(name="analyser")
            documents: list[tuple[str, dict[str, Any]]] = []

            def into_list(name: str, doc: dict[str, Any]) -> None:
                documents.append((name, doc))

            journaled = subscribe_writer(
                RE, catalog, batch_size=BATCH_SIZE, seed_scan_id=False, recover_pending=False
            )
            journaled.unsubscribe()
            bare = TiledWriter(catalog, batch_size=BATCH_SIZE)

            def running(callback: Callable[[str, dict[str, Any]], None]) -> Callable[[], None]:
                def one_run() -> None:
                    documents.clear()
                    token = RE.subscribe(callback)
                    try:
                        RE(count([analyser], num=num))
                    finally:
                        RE.unsubscribe(token)

                return one_run

            cases = {
                "list": running(into_list),
                "journaled": running(journaled.writer),
                "bare": running(bare),
            }
            cases["list"]()
            fields = next(len(d["data_keys"]) for n, d in documents if n == "descriptor")
            t = side_by_side(cases, quick=quick)
            runs = len(list(catalog))
            assert not journaled.writer.failed_runs, "the catalog refused a run"
        finally:
            close_catalog(catalog)
            loop.call_soon_threadsafe(loop.stop)
            RE._th.join()
            loop.close()

    def rate(name: str) -> float:
        return num / t[name]

    shape = f"count(num={num}) of a mock ServomexAnalyser (5 channels, {fields} fields)"
    return [
        Result("RE → list", rate("list"), "events/s", f"{shape}; the RunEngine's own floor"),
        Result(
            "RE → journaled TiledWriter ÷ list",
            rate("journaled") / rate("list"),
            "×",
            f"subscribe_writer, embedded SQLite, batch {BATCH_SIZE}; {runs} runs written",
        ),
        Result(
            "RE → bare TiledWriter ÷ list",
            rate("bare") / rate("list"),
            "×",
            f"bluesky_tiled_plugins.TiledWriter, batch {BATCH_SIZE}",
        ),
        Result(
            "journaled ÷ bare writer",
            rate("journaled") / rate("bare"),
            "×",
            "what the write-ahead journal costs on top of TiledWriter",
        ),
    ]
