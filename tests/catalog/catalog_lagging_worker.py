"""A separate process for test_catalog_background: a count whose catalog worker is stuck.

    python catalog_lagging_worker.py CATALOG NUM STUCK_AT

The catalog writer blocks for ever at event STUCK_AT (a hung catalog); the RunEngine goes on
and prints ``EVENT <seq>`` for every event the journal holds, then ``ALL`` (the stop then
waits for the catalog: the test kills the process there).
"""

from __future__ import annotations

import sys
import threading
from typing import Any


def main(location: str, num: int, stuck_at: int) -> None:
    from bluesky import RunEngine
    from bluesky_tiled_plugins import TiledWriter
    from catalog_helpers import connected_analyser, counting

    from ophyd_servomex.catalog import open_catalog, subscribe_writer

    never = threading.Event()
    printing = threading.Lock()

    def say(line: str) -> None:
        # one write per line under a lock: the worker thread and the RunEngine's both print,
        # and print()'s separate write of the newline let "STUCK" and "EVENT 15" interleave
        with printing:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    class StuckWriter:
        def __init__(self, client: Any, **kwargs: Any) -> None:
            self.inner = TiledWriter(client, **kwargs)

        def __call__(self, name: str, doc: dict[str, Any]) -> None:
            if name == "event" and doc["seq_num"] == stuck_at:
                say("STUCK")
                never.wait()
            self.inner(name, doc)

    catalog = open_catalog(location)
    RE = RunEngine({})
    subscribe_writer(RE, catalog, batch_size=10, writer_factory=StuckWriter, stop_timeout=3600)

    def report(name: str, doc: dict[str, Any]) -> None:
        # subscribed after the writer: an event printed here is already journaled
        if name == "event":
            say(f"EVENT {doc['seq_num']}")
            if doc["seq_num"] == num:
                say("ALL")

    RE.subscribe(report)
    analyser = connected_analyser()
    RE(counting(analyser, num))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
