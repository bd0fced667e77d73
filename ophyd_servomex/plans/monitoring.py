"""Recording the broadcast: one run whose monitor streams hold every frame for a while."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import MsgGenerator

from ..codec.errors import ServomexValidationError
from ..devices import ServomexAnalyser

__all__ = ["monitor_broadcast", "monitor_stream_name"]


def monitor_stream_name(analyser: ServomexAnalyser) -> str:
    """The event stream ``monitor_broadcast`` records ``analyser`` into."""
    return f"{analyser.name}_monitor"


def monitor_broadcast(
    analysers: Sequence[ServomexAnalyser],
    duration: float,
    *,
    md: Mapping[str, Any] | None = None,
) -> MsgGenerator[str]:
    """One run that records every frame of each analyser for ``duration`` seconds.

    Each analyser is monitored as a whole (``bps.monitor(analyser)``), so its stream
    (``<name>_monitor``) gets one event per frame — every continuous broadcast, or every
    background poll in Modbus mode (at the analyser's ``poll_rate_hz``) — with all the
    analyser's fields sharing the frame's timestamp. The frame current when monitoring
    starts is the first event. Returns the run's uid.
    """
    if not analysers:
        raise ServomexValidationError("monitor_broadcast needs at least one analyser")
    if not duration > 0:
        raise ServomexValidationError(f"duration must be > 0 s, not {duration!r}")
    names = [a.name for a in analysers]
    if len(set(names)) != len(names) or not all(names):
        raise ServomexValidationError(f"analysers need distinct, non-empty names, not {names}")
    metadata: dict[str, Any] = {
        "plan_name": "monitor_broadcast",
        "detectors": names,
        "plan_args": {"analysers": [repr(a) for a in analysers], "duration": duration},
        "duration": duration,
        "hints": {"monitors": [monitor_stream_name(a) for a in analysers]},
    }
    metadata.update(md or {})

    def record() -> MsgGenerator[None]:
        for analyser in analysers:
            yield from bps.monitor(analyser, name=monitor_stream_name(analyser))
        yield from bps.sleep(duration)
        for analyser in analysers:
            yield from bps.unmonitor(analyser)

    run_wrapper = cast(Callable[..., MsgGenerator[str]], bpp.run_wrapper)
    uid: str = yield from run_wrapper(record(), md=metadata)
    return uid
