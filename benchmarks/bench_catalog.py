"""RunEngine → catalog, as ratios to an in-memory list: throughput and callback stalls.

One RunEngine runs the same plan — ``count([device], num=N)`` of a five-field device made of
ophyd-async soft signals (the shape of a five-channel analyser, no I/O) — with one
subscriber at a time, the cases interleaved round by round:

* ``list``: the documents appended to a Python list, the floor a RunEngine costs;
* ``journaled``: :func:`ophyd_servomex.catalog.subscribe_writer`'s writer with its defaults:
  one router, a write-ahead journal in the callback, each run's ``TiledWriter`` run writer
  (lean normalizer, batches of ``DEFAULT_BATCH_SIZE``) on the catalog worker thread, into an
  embedded SQLite catalog; a run's stop waits for the worker, so a run's time includes
  getting all of it into the catalog;
* ``journaled-100``: the same writer with the previous defaults (batches of 100, the stock
  ``RunNormalizer``), for the before/after in one run;
* ``bare``: ``bluesky_tiled_plugins.TiledWriter`` alone in the callback (batches of
  ``DEFAULT_BATCH_SIZE``; what the writer did before the worker: every batch append inside
  the RunEngine's callback).

Stalls: in separate runs, every callback call is timed; the longest call on any document
but the stop (``stall``) and the stop (which waits for the catalog) are reported, and the
stall as a ratio to the list callback's longest call.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._harness import Result, side_by_side

OLD_BATCH_SIZE = 100  # the writer's default before the batch-size change
FIELDS = 5

Callback = Callable[[str, dict[str, Any]], None]


def _events(quick: bool) -> int:
    return 50 if quick else 1000


def _stall_events(quick: bool) -> int:
    return 350 if quick else 2000  # two batch appends of 1 000 (several of 100 when quick)


class _Timed:
    """A callback wrapper noting its longest call (the stop apart)."""

    def __init__(self, inner: Callback) -> None:
        self.inner = inner
        self.longest = 0.0
        self.longest_at = ""
        self.stop = 0.0

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        began = time.perf_counter()
        self.inner(name, doc)
        spent = time.perf_counter() - began
        if name == "stop":
            self.stop = max(self.stop, spent)
        elif spent > self.longest:
            self.longest = spent
            self.longest_at = f"{name} {doc.get('seq_num', '')}".strip()


def _device() -> Any:
    from ophyd_async.core import StandardReadable, soft_signal_r_and_setter

    class FiveFields(StandardReadable):
        def __init__(self, name: str = "") -> None:
            with self.add_children_as_readables():
                self.i1, _ = soft_signal_r_and_setter(float, 20.9, units="%")
                self.i2, _ = soft_signal_r_and_setter(float, 0.04, units="%")
                self.i3, _ = soft_signal_r_and_setter(float, 78.1, units="%")
                self.e1, _ = soft_signal_r_and_setter(float, 4.0, units="mA")
                self.e2, _ = soft_signal_r_and_setter(float, 12.0, units="mA")
            super().__init__(name=name)

    return FiveFields


def run(quick: bool) -> list[Result]:
    """Events/s into the catalog as a ratio to a list, and the longest callback stall."""
    import functools
    import warnings

    from bluesky import RunEngine
    from bluesky.plans import count
    from bluesky_tiled_plugins import TiledWriter
    from bluesky_tiled_plugins.writing.tiled_writer import RunNormalizer
    from ophyd_async.core import init_devices

    from ophyd_servomex.catalog import (
        DEFAULT_BATCH_SIZE,
        close_catalog,
        open_catalog,
        subscribe_writer,
    )
    from ophyd_servomex.catalog.normalizer import tiled_run_writer

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    num = _events(quick)
    loop = asyncio.new_event_loop()
    RE = RunEngine({}, loop=loop)
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as directory:
        catalog = open_catalog(Path(directory) / "catalog")
        try:
            device_class = _device()
            with init_devices():
                device = device_class(name="analyser")
            documents: list[tuple[str, dict[str, Any]]] = []

            def into_list(name: str, doc: dict[str, Any]) -> None:
                documents.append((name, doc))

            journaled = subscribe_writer(RE, catalog, seed_scan_id=False, recover_pending=False)
            RE.unsubscribe(journaled.token)  # subscribed per case below
            previous = subscribe_writer(
                RE,
                catalog,
                backup_directory=Path(directory) / "backup-100",
                batch_size=OLD_BATCH_SIZE,
                writer_factory=functools.partial(tiled_run_writer, normalizer=RunNormalizer),
                seed_scan_id=False,
                recover_pending=False,
            )
            RE.unsubscribe(previous.token)
            bare = TiledWriter(catalog, batch_size=DEFAULT_BATCH_SIZE)

            def running(callback: Callback, events: int) -> Callable[[], None]:
                def one_run() -> None:
                    documents.clear()
                    token = RE.subscribe(callback)
                    try:
                        RE(count([device], num=events))
                    finally:
                        RE.unsubscribe(token)

                return one_run

            callbacks: dict[str, Callback] = {
                "list": into_list,
                "journaled": journaled.writer,
                "journaled-100": previous.writer,
                "bare": bare,
            }
            running(into_list, 1)()
            fields = next(len(d["data_keys"]) for n, d in documents if n == "descriptor")
            assert fields == FIELDS
            t = side_by_side(
                {name: running(cb, num) for name, cb in callbacks.items()}, quick=quick
            )
            stalls = {name: _Timed(cb) for name, cb in callbacks.items() if name != "journaled-100"}
            stall_events = _stall_events(quick)
            cpu = dict.fromkeys(stalls, float("inf"))  # the process's CPU seconds per run
            for _ in range(1 if quick else 2):
                for name, timed in stalls.items():
                    began = time.process_time()
                    running(timed, stall_events)()
                    cpu[name] = min(cpu[name], time.process_time() - began)
            runs = len(list(catalog))
            for subscription in (journaled, previous):
                assert not subscription.writer.failed_runs, "the catalog refused a run"
                subscription.unsubscribe()
        finally:
            close_catalog(catalog)
            loop.call_soon_threadsafe(loop.stop)
            RE._th.join()
            loop.close()

    def rate(name: str) -> float:
        return num / t[name]

    shape = f"count(num={num}) of a {FIELDS}-field soft-signal device"
    stall_shape = f"count(num={stall_events}), batch {DEFAULT_BATCH_SIZE}"
    ms = 1e3
    return [
        Result("RE → list", rate("list"), "events/s", f"{shape}; the RunEngine's own floor"),
        Result(
            "RE → journaled writer ÷ list",
            rate("journaled") / rate("list"),
            "×",
            f"subscribe_writer's defaults (batch {DEFAULT_BATCH_SIZE}, lean normalizer), "
            f"embedded SQLite, each run wholly in the catalog before the next; {runs} runs "
            "written (goal ≥ 0.85)",
        ),
        Result(
            "RE → journaled writer, previous defaults ÷ list",
            rate("journaled-100") / rate("list"),
            "×",
            f"the same writer, batch {OLD_BATCH_SIZE} and the stock RunNormalizer (before)",
        ),
        Result(
            "RE → bare TiledWriter ÷ list",
            rate("bare") / rate("list"),
            "×",
            f"TiledWriter in the RunEngine's callback, batch {DEFAULT_BATCH_SIZE} (no worker, "
            "no journal)",
        ),
        Result(
            "process CPU per run, journaled writer ÷ list",
            cpu["journaled"] / cpu["list"],
            "×",
            f"{stall_shape}: every thread's CPU time (RunEngine, worker, tiled app), best of "
            "the runs; less sensitive to other processes than the wall-clock ratio",
        ),
        Result(
            "longest callback, journaled writer",
            stalls["journaled"].longest * ms,
            "ms",
            f"{stall_shape}; any document but the stop (at {stalls['journaled'].longest_at}); "
            "goal < 50 ms",
        ),
        Result(
            "longest callback, journaled ÷ list",
            stalls["journaled"].longest / stalls["list"].longest,
            "×",
            f"the list callback's longest: {stalls['list'].longest * ms:.2f} ms",
        ),
        Result(
            "longest callback, bare TiledWriter",
            stalls["bare"].longest * ms,
            "ms",
            f"at {stalls['bare'].longest_at}: a batch append inside the callback",
        ),
        Result(
            "stop, journaled writer",
            stalls["journaled"].stop * ms,
            "ms",
            "the stop waits for the worker to store the run (the last batch, the stop)",
        ),
    ]
