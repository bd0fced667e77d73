"""What the package costs a process: import time, and memory over a long broadcast.

**Import time.** A fresh interpreter is started for each case, interleaved round by round,
and the best of N wall times kept: ``python -c "import ophyd_servomex"`` (and the driver and
catalog packages) as a ratio to ``python -c "import json"``, a stdlib import of about the
same reach. Heavy layers (ophyd-async, tiled) are imported lazily, so the top-level import
should sit close to 1×.

**Memory growth.** 100 000 continuous frames (10 000 with ``--quick``) of the simulated
bench unit — noisy, drifting, ten minutes of simulated time per 12 000 frames — go through a
``ContinuousDecoder`` in serial-sized chunks and into a consumer that keeps the latest frame
and a running sum, as a monitor does. ``tracemalloc`` traces everything after a warm-up
tenth; what is still allocated at the end, per frame, is the growth: it must be about 0.
"""

from __future__ import annotations

import gc
import itertools
import random
import subprocess
import sys
import time
import tracemalloc

from ._harness import Result

IMPORTS = {
    "json": "import json",
    "bare": "pass",
    "ophyd_servomex": "import ophyd_servomex",
    "ophyd_servomex.driver": "import ophyd_servomex.driver",
    "ophyd_servomex.catalog": "import ophyd_servomex.catalog",
}
WIRE_FRAME = 206
"""Bytes of a 5-channel frame on the wire (with CR LF)."""


def _start_time(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def import_times(rounds: int) -> dict[str, float]:
    """Best wall time of each interpreter start, the cases interleaved round by round."""
    best = dict.fromkeys(IMPORTS, float("inf"))
    names = list(IMPORTS)
    for round_ in range(rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            best[name] = min(best[name], _start_time(IMPORTS[name]))
    return best


def broadcast(frames: int, seed: int = 12_000) -> bytes:
    """``frames`` frames of the noisy bench unit, 20 frames per simulated second."""
    from ophyd_servomex.codec.continuous import build_frame
    from ophyd_servomex.sim import SimAnalyser, bench_channels

    clock = [0.0]
    analyser = SimAnalyser(bench_channels(noisy=True), seed=seed, clock=lambda: clock[0])
    out = bytearray()
    for k in range(frames):
        clock[0] = k * 0.05
        out += build_frame(analyser.truth())
    return bytes(out)


def growth_per_frame(frames: int) -> tuple[float, int, int]:
    """(bytes still held per traced frame, frames decoded, bytes held in all)."""
    from ophyd_servomex.codec.continuous import ContinuousDecoder
    from ophyd_servomex.codec.models import Frame

    data = broadcast(frames)
    rng = random.Random(1)
    cuts = [0]
    while cuts[-1] < len(data):
        cuts.append(cuts[-1] + rng.choice((16, 64, 128, 206, 512)))
    decoder = ContinuousDecoder(clock=lambda: 0.0)
    latest: Frame | None = None
    total = 0.0
    warm_up = frames // 10
    traced_from = -1
    gc.collect()
    for start, stop in itertools.pairwise(cuts):
        for item in decoder.feed(data[start:stop]):
            if isinstance(item, Frame):
                latest = item
                total += item.readings[0].value or 0.0
        if traced_from < 0 and decoder.frames >= warm_up:
            traced_from = decoder.frames
            gc.collect()
            tracemalloc.start()
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert latest is not None
    assert total > 0
    assert decoder.errors == 0
    assert decoder.frames == frames
    traced = decoder.frames - traced_from
    return held / traced, decoder.frames, held


def run(quick: bool) -> list[Result]:
    """Import time ratios and the memory growth per frame."""
    times = import_times(3 if quick else 15)
    json_ms = times["json"] * 1000
    results = [
        Result(
            f"python -c 'import {name}' ÷ 'import json'",
            times[name] / times["json"],
            "×",
            f"best of {3 if quick else 15}; {(times[name] - times['bare']) * 1000:.0f} ms over "
            f"a bare start ({times['bare'] * 1000:.0f} ms; import json {json_ms:.0f} ms)",
        )
        for name in ("ophyd_servomex", "ophyd_servomex.driver", "ophyd_servomex.catalog")
    ]
    per_frame, frames, held = growth_per_frame(10_000 if quick else 100_000)
    results += [
        Result(
            "memory growth per frame",
            per_frame,
            "B/frame",
            f"{frames:,} frames through ContinuousDecoder + a consumer; {held:,} B still "
            "held after the warm-up tenth",
        ),
        Result(
            "memory growth ÷ frame size",
            per_frame / WIRE_FRAME,
            "×",
            f"growth per frame as a share of the {WIRE_FRAME}-byte frame itself",
        ),
    ]
    return results
