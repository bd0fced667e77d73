"""Helpers for the plan tests: a RunEngine on its own loop and a document recorder."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

from bluesky import RunEngine
from bluesky.run_engine import TransitionError


def make_run_engine() -> RunEngine:
    """A RunEngine on its own fresh loop."""
    return RunEngine({}, call_returns_result=True, loop=asyncio.new_event_loop())


def stop_run_engine(engine: RunEngine) -> None:
    """Halt anything still running, then stop and close the RunEngine's loop."""
    if engine.state not in ("idle", "panicked"):
        with contextlib.suppress(TransitionError):
            engine.halt()
    engine.loop.call_soon_threadsafe(engine.loop.stop)
    engine._th.join()
    engine.loop.close()


def record(engine: RunEngine) -> defaultdict[str, list[dict[str, Any]]]:
    """Documents by name, filled as the RunEngine emits them."""
    docs: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    engine.subscribe(lambda name, doc: docs[name].append(doc))
    return docs
