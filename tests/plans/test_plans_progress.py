"""The calibration progress display: the phase as the description, seconds per phase, and
plain lines without cursor escapes when the output is not a terminal.

bluesky's ProgressBarManager showed the phase as the unit (``1.64cal_gas_1/s``) and wrote
``\\x1b[A`` into logs and CI output.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from ophyd_async.core import init_devices

from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.devices import ServomexAnalyser
from ophyd_servomex.plans import (
    CalibrationProgressBar,
    CalibrationProgressManager,
    calibrate,
    calibration_run,
    describe_update,
)
from ophyd_servomex.sim import SimConfig, SimulatorThread


def mock_analyser(**options: Any) -> ServomexAnalyser:
    with init_devices(mock=True):
        o2 = ServomexAnalyser(**options)
    return o2


def test_a_mock_calibration_writes_one_plain_line_per_phase(RE: RunEngine) -> None:
    out = io.StringIO()  # not a terminal
    RE.waiting_hook = CalibrationProgressManager(out, line_interval=60.0)
    # one phase per poll; 0.3 s leaves the RunEngine ample time to start watching before
    # the first poll, even on a loaded machine
    o2 = mock_analyser(calibration_poll_period=0.3)
    RE(calibration_run(o2, 2, confirm=True))
    text = out.getvalue()
    assert "\x1b" not in text
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "o2-calibration group 2: sampling",
        "o2-calibration group 2: cal_gas_1",
        "o2-calibration group 2: cal_gas_2",
        "o2-calibration group 2: cal_gas_1",
        "o2-calibration group 2: done",
    ]
    pattern = re.compile(
        r"o2-calibration group 2: (sampling|cal_gas_1|cal_gas_2|done)"
        r"  \d+\.\d s  (0|25|50|75|100)%  total \d+\.\d s"
    )
    for line in lines:
        assert pattern.fullmatch(line), line
    assert lines[2].split("  ")[2] == "50%"


def test_a_simulated_calibration_shows_elapsed_against_expected_time(RE: RunEngine) -> None:
    out = io.StringIO()
    RE.waiting_hook = CalibrationProgressManager(out, line_interval=0.1)
    config = SimConfig(
        mode=ProtocolKind.MODBUS_RTU, noisy=False, time_scale=100.0, flush_time=30.0
    )  # 0.3 s per gas
    with SimulatorThread(config) as sim:
        with init_devices(set_name=False):
            gas = ServomexAnalyser(
                sim.port,
                protocol="modbus-rtu",
                address=30,
                inter_frame_idle=0.0,
                calibration_poll_period=0.02,
                name="gas",
            )
        try:
            RE(calibrate(gas, 1, confirm=True, gas_time=0.3))
        finally:
            call_in_bluesky_event_loop(gas.disconnect())
    text = out.getvalue()
    assert "\x1b" not in text
    assert "\r" not in text
    lines = text.splitlines()
    gas_line = re.compile(
        r"gas-calibration group 1: (cal_gas_1|cal_gas_2)  \d+\.\d/0\.3 s  (25|50|75)%"
        r"(  ~\d+\.\d s left)?  total \d+\.\d s"
    )
    other_line = re.compile(
        r"gas-calibration group 1: (sampling  \d+\.\d s  0%  ~0\.9 s left"
        r"|done  \d+\.\d s  100%)  total \d+\.\d s"
    )
    for line in lines:
        assert gas_line.fullmatch(line) or other_line.fullmatch(line), line
    phases = [line.split("  ")[0].rsplit(": ", 1)[1] for line in lines]
    distinct = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert distinct[-4:] == ["cal_gas_1", "cal_gas_2", "cal_gas_1", "done"]
    assert distinct[0] in ("sampling", "cal_gas_1")
    assert len(lines) > len(distinct)  # the time in a phase is reported as it grows
    assert phases.count("done") == 1


def test_on_a_terminal_the_lines_are_redrawn_in_place_and_left_at_the_end(
    RE: RunEngine,
) -> None:
    out = io.StringIO()
    RE.waiting_hook = CalibrationProgressManager(out, tty=True)
    o2 = mock_analyser(calibration_poll_period=0.05)
    RE(calibrate(o2, 1, confirm=True))
    text = out.getvalue()
    assert "\x1b[A" in text  # redrawn in place
    last = text.rsplit("\x1b[A", 1)[1]
    assert last.startswith("\r")
    assert last.strip().startswith("o2-calibration group 1: done  0.0 s  100%")
    assert last.endswith("\n")  # the cursor is left below the final line


class FakeStatus:
    """Enough of a watchable status for the bar: watch, add_callback, done."""

    def __init__(self) -> None:
        self.done = False
        self.watchers: list[Callable[..., None]] = []
        self.callbacks: list[Callable[[Any], None]] = []

    def watch(self, watcher: Callable[..., None]) -> None:
        self.watchers.append(watcher)

    def add_callback(self, callback: Callable[[Any], None]) -> None:
        self.callbacks.append(callback)

    def send(self, **update: Any) -> None:
        for watcher in self.watchers:
            watcher(**update)

    def finish(self) -> None:
        self.done = True
        for callback in self.callbacks:
            callback(self)


def test_plain_lines_come_on_a_new_name_on_the_interval_and_at_the_end() -> None:
    out = io.StringIO()
    status = FakeStatus()
    CalibrationProgressBar([status], stream=out, line_interval=3600.0)
    status.send(name="a: cal_gas_1", current=0.5, initial=0.0, target=60.0, unit="s")
    status.send(name="a: cal_gas_1", current=1.0, initial=0.0, target=60.0, unit="s")
    status.send(name="a: cal_gas_2", current=0.0, initial=0.0, target=60.0, unit="s")
    status.send(name="a: cal_gas_2", current=2.0, initial=0.0, target=60.0, unit="s")
    assert out.getvalue() == "a: cal_gas_1  0.5/60.0 s\na: cal_gas_2  0.0/60.0 s\n"
    status.finish()  # the last state is written once at the end
    assert out.getvalue().splitlines()[-1] == "a: cal_gas_2  2.0/60.0 s"
    status.send(name="a: late", current=1.0)
    status.finish()
    assert len(out.getvalue().splitlines()) == 3


def test_describe_update_formats_what_it_is_given() -> None:
    assert (
        describe_update(
            name="gas-calibration group 1: cal_gas_2",
            current=12.04,
            initial=0.0,
            target=60.0,
            unit="s",
            precision=1,
            fraction=0.5,
            time_elapsed=75.3,
            time_remaining=108.0,
        )
        == "gas-calibration group 1: cal_gas_2  12.0/60.0 s  50%  ~108.0 s left  total 75.3 s"
    )
    assert describe_update(name="motor", current=3, target=10, unit="mm") == "motor  3/10 mm"
    assert describe_update() == "status"


def test_the_manager_keeps_its_bar_and_never_warns() -> None:
    out = io.StringIO()
    manager = CalibrationProgressManager(out, tty=False)
    status = FakeStatus()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        manager(None)  # nothing to clean up: quietly nothing
        manager({status})
        first = manager.pbar
        manager({status})  # the same statuses again: the same bar
        assert manager.pbar is first
        other = FakeStatus()
        manager({other})  # a new wait before the old one was cleaned up
        assert manager.pbar is not first
        assert first is not None
        assert first.done
        manager(None)
        assert manager.pbar is None


@pytest.mark.parametrize("tty", [False, True])
def test_the_manager_follows_the_stream_isatty(tty: bool) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    manager = CalibrationProgressManager(Stream())
    manager({FakeStatus()})
    assert manager.pbar is not None
    assert manager.pbar.tty is tty
