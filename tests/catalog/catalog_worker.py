"""A separate process for the catalog tests: write a count, or replay a run.

    python catalog_worker.py count CATALOG NUM DELAY   # prints EVENT <seq> <time> per event
    python catalog_worker.py replay CATALOG KEY        # prints one JSON line
    python catalog_worker.py runs CATALOG RUNS GO      # READY, waits for file GO, then RUNS
                                                       # 2-event counts: SCAN <scan_id> each

The catalog is a directory or an http(s):// URI (API key from TILED_API_KEY).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def count(location: str, num: int, delay: float) -> None:
    from bluesky import RunEngine
    from catalog_helpers import connected_analyser, counting

    from ophyd_servomex.catalog import open_catalog, subscribe_writer

    catalog = open_catalog(location)
    RE = RunEngine({})
    # batches of 100: the kill test finds whole batches in the catalog before the kill
    subscription = subscribe_writer(RE, catalog, batch_size=100)
    print("SUBSCRIBED", subscription.scan_id, subscription.backup_directory, flush=True)

    def report(name: str, doc: dict[str, Any]) -> None:
        # subscribed after the writer: an event printed here is already journaled
        if name == "event":
            print("EVENT", doc["seq_num"], repr(doc["time"]), flush=True)

    RE.subscribe(report)
    analyser = connected_analyser()
    (uid,) = RE(counting(analyser, num, delay=delay))
    scan_id = catalog[uid].metadata["start"]["scan_id"]
    print("DONE", uid, scan_id, json.dumps(subscription.writer.failed_runs), flush=True)


def runs(location: str, number: int, go: str) -> None:
    import os
    import time

    from bluesky import RunEngine
    from catalog_helpers import connected_analyser, counting

    from ophyd_servomex.catalog import open_catalog, subscribe_writer

    catalog = open_catalog(location)
    RE = RunEngine({})
    subscribe_writer(RE, catalog)
    analyser = connected_analyser()
    print("READY", flush=True)
    while not os.path.exists(go):
        time.sleep(0.01)
    for _ in range(number):
        (uid,) = RE(counting(analyser, 2))
        print("SCAN", RE.md["scan_id"], uid, flush=True)


def replay(location: str, key: str) -> None:
    from ophyd_servomex.catalog import get_run, open_catalog, run_summary, run_table

    run = get_run(open_catalog(location), key)
    table = run_table(run)
    summary = run_summary(run)
    columns = {column: table[column].tolist() for column in table.columns if column != "time"}
    print(json.dumps({"summary": summary, "seq_num": table.index.tolist(), "columns": columns}))


if __name__ == "__main__":
    mode, location, *rest = sys.argv[1:]
    if mode == "count":
        count(location, int(rest[0]), float(rest[1]))
    elif mode == "runs":
        runs(location, int(rest[0]), rest[1])
    elif mode == "replay":
        replay(location, rest[0])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
