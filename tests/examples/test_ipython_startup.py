"""``example_plans/ipython_startup.py``: its live plots and its clean exit.

The plots (:class:`ChannelPlots`) are fed synthetic documents in-process, with the Agg
backend. The session itself runs the way IPython runs it, in real IPython subprocesses
against the simulator: once as a profile start-up file (``ipython --profile-dir=DIR
--matplotlib``, the documented session) and once with ``%run -i … --sim``; each must leave
without a traceback, having disconnected the analyser.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import matplotlib
import pytest

matplotlib.use("agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[2]
STARTUP = ROOT / "example_plans" / "ipython_startup.py"


def _load(name: str) -> ModuleType:
    """The start-up file imported as a module: definitions only, nothing started."""
    spec = importlib.util.spec_from_file_location(name, STARTUP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not hasattr(module, "RE")  # the session is set up only as __main__
    return module


@pytest.fixture(scope="module")
def startup() -> ModuleType:
    return _load("servomex_startup")


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


# --- documents --------------------------------------------------------------------------------

CHANNELS = {  # key: (display name, unit)
    "gas-i1-value": ("Oxygen", "%"),
    "gas-i2-value": ("CO", "%"),
    "gas-i3-value": ("CO₂", "%"),
    "gas-e1-value": ("", "mA"),
    "gas-e2-value": ("", "mA"),
}


def start_doc(uid: str = "run1", dimension: str = "time", scan_id: int = 7) -> dict[str, Any]:
    return {
        "uid": uid,
        "time": 1000.0,
        "scan_id": scan_id,
        "plan_name": "count" if dimension == "time" else "scan",
        "hints": {"dimensions": [[[dimension], "primary"]]},
    }


def descriptor_doc(
    uid: str = "desc1", run: str = "run1", name: str = "primary", motor: bool = False
) -> dict[str, Any]:
    data_keys: dict[str, Any] = {
        key: {"dtype": "number", "shape": [], "source": "sim", "units": unit, "object_name": "gas"}
        for key, (_, unit) in CHANNELS.items()
    }
    data_keys["gas-i1-fault"] = {"dtype": "boolean", "shape": [], "source": "sim"}
    hints: dict[str, Any] = {"gas": {"fields": list(CHANNELS)}}
    configuration: dict[str, Any] = {
        "gas": {
            "data": {
                key.removesuffix("value") + "display_name": display
                for key, (display, _) in CHANNELS.items()
            }
        }
    }
    if motor:
        data_keys["motor"] = {"dtype": "number", "shape": [], "source": "m", "units": "mm"}
        hints["motor"] = {"fields": ["motor"]}
    return {
        "uid": uid,
        "run_start": run,
        "name": name,
        "data_keys": data_keys,
        "configuration": configuration,
        "hints": hints,
    }


def event_doc(seq: int, descriptor: str = "desc1", **values: float) -> dict[str, Any]:
    data = {
        "gas-i1-value": 20.3 + seq / 100,
        "gas-i2-value": 0.08,
        "gas-i3-value": 0.25,
        "gas-e1-value": 0.0,
        "gas-e2-value": 0.0,
        "gas-i1-fault": False,
    }
    data.update(
        {f"gas-{k}-value" if not k.startswith("motor") else k: v for k, v in values.items()}
    )
    return {
        "uid": f"ev{seq}",
        "descriptor": descriptor,
        "seq_num": seq,
        "time": 1000.5 + seq,
        "data": data,
    }


def feed(plots: Any, *docs: tuple[str, dict[str, Any]]) -> None:
    for name, doc in docs:
        plots(name, doc)


def count_run(plots: Any, num: int = 3, uid: str = "run1", **values: float) -> None:
    feed(plots, ("start", start_doc(uid)), ("descriptor", descriptor_doc(f"d-{uid}", uid)))
    for seq in range(num):
        plots("event", event_doc(seq, f"d-{uid}", **values))
    plots("stop", {"uid": f"stop-{uid}", "run_start": uid, "exit_status": "success"})


# --- ChannelPlots -----------------------------------------------------------------------------


def test_axes_are_labelled_with_name_and_unit_and_flat_unnamed_channels_skipped(
    startup: ModuleType,
) -> None:
    plots = startup.ChannelPlots()
    count_run(plots)
    assert plots.labels == ["Oxygen [%]", "CO [%]", "CO₂ [%]"]
    axes = plots.figure.axes
    assert len(axes) == 3
    assert axes[-1].get_xlabel() == "time since start [s]"
    assert plots.figure.get_suptitle() == "scan 7: count"
    (line,) = axes[0].get_lines()
    assert list(line.get_xdata()) == [0.5, 1.5, 2.5]
    assert list(line.get_ydata()) == pytest.approx([20.30, 20.31, 20.32])
    low, high = axes[0].get_ylim()
    assert low <= 20.30  # rescaled at the last draw
    assert high >= 20.32


def test_an_unnamed_channel_that_moves_gets_an_axes(startup: ModuleType) -> None:
    plots = startup.ChannelPlots()
    feed(plots, ("start", start_doc()), ("descriptor", descriptor_doc()))
    plots("event", event_doc(0, e1=4.0))
    assert plots.labels == ["Oxygen [%]", "CO [%]", "CO₂ [%]"]
    plots("event", event_doc(1, e1=4.0))
    assert plots.labels == ["Oxygen [%]", "CO [%]", "CO₂ [%]"]
    plots("event", event_doc(2, e1=12.5))
    assert plots.labels == ["Oxygen [%]", "CO [%]", "CO₂ [%]", "E1 [mA]"]
    (line,) = plots.figure.axes[3].get_lines()
    assert list(line.get_ydata()) == [4.0, 4.0, 12.5]  # its whole history, not from now on


def test_one_figure_is_reused_and_cleared_for_each_run(startup: ModuleType) -> None:
    plots = startup.ChannelPlots()
    count_run(plots, uid="run1")
    figure = plots.figure
    count_run(plots, num=2, uid="run2")
    assert plots.figure is figure
    assert plt.get_fignums() == [figure.number]
    assert [len(ax.get_lines()) for ax in figure.axes] == [1, 1, 1]
    assert len(figure.axes[0].get_lines()[0].get_xdata()) == 2


def test_a_closed_window_is_opened_again_by_the_next_run(startup: ModuleType) -> None:
    plots = startup.ChannelPlots()
    count_run(plots, uid="run1")
    plt.close(plots.figure)
    count_run(plots, uid="run2")
    assert plt.fignum_exists(plots.figure.number)
    assert plots.labels == ["Oxygen [%]", "CO [%]", "CO₂ [%]"]


def test_a_scan_plots_against_its_motor(startup: ModuleType) -> None:
    plots = startup.ChannelPlots()
    feed(plots, ("start", start_doc(dimension="motor")), ("descriptor", descriptor_doc(motor=True)))
    for seq in range(3):
        plots("event", event_doc(seq, motor=seq * 0.5))
    assert plots.labels == ["Oxygen [%]", "CO [%]", "CO₂ [%]"]  # the motor is the x axis
    assert plots.figure.axes[-1].get_xlabel() == "motor [mm]"
    assert list(plots.figure.axes[0].get_lines()[0].get_xdata()) == [0.0, 0.5, 1.0]


def test_other_streams_are_not_plotted(startup: ModuleType) -> None:
    plots = startup.ChannelPlots()
    feed(plots, ("start", start_doc()), ("descriptor", descriptor_doc(name="gas_monitor")))
    plots("event", event_doc(0))
    assert plots.figure is None


def test_plots_can_be_turned_off_and_on(startup: ModuleType) -> None:
    plots = startup.ChannelPlots()
    plots.disable()
    count_run(plots, uid="run1")
    assert (plots.figure, plots.draws) == (None, 0)
    plots.enable()
    count_run(plots, uid="run2")
    assert plots.labels == ["Oxygen [%]", "CO [%]", "CO₂ [%]"]


def test_redraws_are_throttled_but_the_end_is_always_drawn(startup: ModuleType) -> None:
    seldom = startup.ChannelPlots(min_interval=1e6)
    count_run(seldom, num=5)
    assert seldom.draws == 2  # the first event, then the end of the run
    often = startup.ChannelPlots(min_interval=0.0, budget=1e9)
    count_run(often, num=5)
    assert often.draws == 6  # every event, then the end


# --- the exit hook --------------------------------------------------------------------------


class _Device:
    name = "fake"

    def __init__(self) -> None:
        self.closed = False

    async def disconnect(self) -> None:
        self.closed = True


def test_the_exit_hook_survives_a_cleared_namespace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What IPython does on exit: empty the namespace the start-up file ran in, then atexit.
    module = _load("servomex_startup_cleared")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    device = _Device()
    hook = module.disconnect_at_exit(device, loop, "/dev/ttyX")
    try:
        module.__dict__.clear()
        hook()
    finally:
        atexit.unregister(hook)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert device.closed
    assert capsys.readouterr().err == "fake: disconnected from /dev/ttyX\n"


# --- real IPython sessions --------------------------------------------------------------------


def _ipython(
    tmp: Path, name: str, commands: str, *options: str, startup: bool
) -> subprocess.Popen[str]:
    """Start IPython with a fresh profile (holding the start-up file when ``startup``) and
    feed it ``commands`` on stdin, as a user would type them."""
    env = dict(os.environ)
    env.update(
        MPLBACKEND="agg",
        IPYTHONDIR=str(tmp / f"{name}-ipython"),
        OPHYD_SERVOMEX_CATALOG=str(tmp / f"{name}-catalog"),
    )
    env.pop("SERVOMEX_PORT", None)
    env.pop("SERVOMEX_PROTOCOL", None)
    if startup:
        env["SERVOMEX_SIM"] = "1"
    else:
        env.pop("SERVOMEX_SIM", None)
    profile = tmp / f"{name}-profile"
    (profile / "startup").mkdir(parents=True)
    if startup:
        shutil.copy(STARTUP, profile / "startup" / "50-servomex.py")
    command = [
        sys.executable, "-m", "IPython", f"--profile-dir={profile}", "--simple-prompt",
        "--colors=nocolor", "--no-banner", "--HistoryManager.enabled=False", *options,
    ]  # fmt: skip
    typed = tmp / f"{name}-input.txt"
    typed.write_text(commands, encoding="utf-8")
    with typed.open("rb") as stdin:
        return subprocess.Popen(
            command,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp,
            env=env,
        )


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    """Two sessions, run side by side, each ``(status, stdout, stderr)``: ``profile`` (the
    documented ``ipython --matplotlib`` with the start-up file in the profile: a count, the
    plot labels, exit) and ``run-i`` (``%run -i ipython_startup.py --sim``, then exit)."""
    tmp = tmp_path_factory.mktemp("ipython")
    processes = {
        "profile": _ipython(
            tmp,
            "profile",
            "RE(count([gas], num=3))\n"
            "print('LABELS', plots.labels, repr(plots.figure.axes[-1].get_xlabel()))\n"
            "exit\n",
            "--matplotlib",
            startup=True,
        ),
        "run-i": _ipython(
            tmp,
            "run-i",
            f"%run -i {STARTUP} --sim\nprint('SESSION', gas.name)\nexit\n",
            startup=False,
        ),
    }
    results: dict[str, tuple[int, str, str]] = {}
    for name, process in processes.items():
        try:
            out, err = process.communicate(timeout=540)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"IPython session {name} did not finish:\n{out}\n{err}")
        results[name] = (process.returncode, out, err)
    return results


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["profile", "run-i"])
def test_the_session_exits_cleanly_and_disconnects(
    sessions: dict[str, tuple[int, str, str]], name: str
) -> None:
    status, out, err = sessions[name]
    everything = out + err
    assert status == 0, everything
    assert re.search(r"gas: modbus-rtu analyser on /dev/pts/\d+, channels I1, I2, I3, E1, E2", out)
    for bad in ("Traceback", "NameError", "Exception ignored", "Error"):
        assert bad not in everything, everything
    port = re.search(r"analyser on (/dev/pts/\d+)", out)
    assert port is not None
    assert f"gas: disconnected from {port[1]}\n" in err, everything


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_documented_session_plots_named_channels(
    sessions: dict[str, tuple[int, str, str]],
) -> None:
    status, out, err = sessions["profile"]
    assert status == 0, out + err
    assert "LABELS ['Oxygen [%]', 'CO [%]', 'CO₂ [%]'] 'time since start [s]'" in out, out + err
    assert re.search(r"\| +seq_num \| +time \| +gas-i1-value \|", out)  # BEC's table
    assert "SESSION gas" in sessions["run-i"][1]
