"""The ophyd-async side: ``ServomexAnalyser("pva://SMX1:")`` reads an IOC through PVI and
gives the same data keys, hints and plans as a direct connection."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.plans import count
from epics_helpers import CalibrationIoc, FacilityIoc, SimProcess
from ophyd_async.core import init_devices

from ophyd_servomex.codec.errors import ServomexConfigurationError
from ophyd_servomex.codec.models import ChannelId
from ophyd_servomex.devices import LinkState, ServomexAnalyser
from ophyd_servomex.devices.remote import RemoteServomexAnalyser, link_state

pytestmark = pytest.mark.timeout(240)


def _collect(RE: RunEngine, plan: Any) -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    RE(plan, lambda name, doc: docs.append((name, doc)))
    return docs


def _descriptor(docs: list[tuple[str, dict[str, Any]]], stream: str = "primary") -> dict[str, Any]:
    (descriptor,) = [d for n, d in docs if n == "descriptor" and d["name"] == stream]
    return descriptor


def _shape(descriptor: dict[str, Any]) -> dict[str, tuple[str, Any, Any]]:
    # PVA gives every integer PV a display structure, so an integer without units reads
    # units "" over the IOC where the direct device has none: the same "no units"
    return {
        key: (info["dtype"], info.get("units") or None, info.get("precision"))
        for key, info in descriptor["data_keys"].items()
    }


@pytest.fixture(scope="module")
def RE() -> RunEngine:
    return RunEngine({}, call_returns_result=False)


def test_pva_port_gives_the_remote_device(facility_ioc: FacilityIoc, RE: RunEngine) -> None:
    with init_devices():
        analyser = ServomexAnalyser("pva://SMX1:")
    assert isinstance(analyser, RemoteServomexAnalyser)
    assert analyser.name == "analyser"
    assert analyser.channel_ids == ("I1", "I2", "I3", "E1", "E2")
    assert analyser.channel("i2") is analyser.channel(ChannelId.I2) is analyser.i2
    with pytest.raises(ServomexConfigurationError) as refused:
        analyser.channel("I4")
    assert refused.value.message == "analyser has no channel I4 (it has I1, I2, I3, E1, E2)"
    assert refused.value.context.port == "pva://SMX1:"


def test_channel_lookup_is_the_direct_devices() -> None:
    """Both devices find a channel with one helper: the same names, the same refusal."""
    from ophyd_servomex.codec.errors import ErrorContext
    from ophyd_servomex.devices.channel_lookup import lookup_channel

    children = {ChannelId.I1: "i1-child", ChannelId.E1: "e1-child"}
    context = ErrorContext(port="pva://X:")
    assert lookup_channel(children, "e1", owner="gas", context=context) == "e1-child"
    with pytest.raises(ServomexConfigurationError) as refused:
        lookup_channel(children, "I2", owner="gas", context=context)
    assert refused.value.message == "gas has no channel I2 (it has I1, E1)"
    with pytest.raises(ServomexConfigurationError, match="none; connect first"):
        lookup_channel({}, "I1", owner="", context=context)


def test_count_gives_the_same_data_keys_as_a_direct_device(
    facility_ioc: FacilityIoc, RE: RunEngine, tmp_path: Path
) -> None:
    sim = SimProcess("--mode", "modbus-rtu", "--address", "30", log=tmp_path / "direct.log")
    try:
        with init_devices():
            analyser = ServomexAnalyser(
                sim.port, protocol="modbus-rtu", address=30, inter_frame_idle=0.005
            )
        direct = _collect(RE, count([analyser], num=5))
    finally:
        RE(_disconnect(analyser))
        sim.stop()
    with init_devices():
        analyser = ServomexAnalyser("pva://SMX1:")
    remote = _collect(RE, count([analyser], num=5))

    assert _shape(_descriptor(remote)) == _shape(_descriptor(direct))
    assert _descriptor(remote)["hints"] == _descriptor(direct)["hints"]
    assert sorted(_descriptor(remote)["configuration"]["analyser"]["data_keys"]) == sorted(
        _descriptor(direct)["configuration"]["analyser"]["data_keys"]
    )
    events = [d for n, d in remote if n == "event"]
    assert len(events) == 5
    assert [e["data"]["analyser-i1-value"] for e in events] == [20.378] * 5
    assert all(e["data"]["analyser-i1-status"] == "ok" for e in events)
    # lean events: each channel's value and one status string, eight analyser fields
    assert sorted(_descriptor(remote)["data_keys"]) == sorted(
        [f"analyser-{c}-{f}" for c in ("i1", "i2", "i3", "e1", "e2") for f in ("value", "status")]
        + [f"analyser-{f}" for f in ("fault", "maintenance", "clock", "dropped_frames")]
        + [f"analyser-cal_group{g}" for g in (1, 2, 3, 4)]
    )
    assert _descriptor(remote)["hints"] == {
        "analyser": {"fields": [f"analyser-{c}-value" for c in ("i1", "i2", "i3")]}
    }
    for group in ("cal_group1", "cal_group2", "cal_group3", "cal_group4"):
        choices = _descriptor(remote)["data_keys"][f"analyser-{group}"]["choices"]
        assert choices == _descriptor(direct)["data_keys"][f"analyser-{group}"]["choices"]
        assert choices == ["idle", "sampling", "cal_gas_1", "cal_gas_2", "done", "stopped"]
    assert _descriptor(remote)["data_keys"]["analyser-i1-value"]["units"] == "%"
    assert _descriptor(remote)["data_keys"]["analyser-i1-value"]["precision"] == 3


@pytest.mark.parametrize(
    ("connected", "status", "state"),
    [
        (True, "connected", LinkState.CONNECTED),
        (True, "no frame: no answer within 2 s", LinkState.CONNECTED),
        (False, "down: ServomexConnectionError: port gone", LinkState.RECONNECTING),
        (False, "connecting", LinkState.DISCONNECTED),
    ],
)
def test_link_state_from_the_ioc_link_pvs(connected: bool, status: str, state: LinkState) -> None:
    assert link_state(connected, status) is state


def test_link_state_and_poll_rate_under_the_direct_devices_names(
    facility_ioc: FacilityIoc, RE: RunEngine
) -> None:
    from ophyd_servomex.codec.errors import ServomexValidationError

    with init_devices():
        analyser = RemoteServomexAnalyser("pva://SMX1:")
        down = RemoteServomexAnalyser("pva://SMX2:")  # its simulator does not run

    async def check() -> None:
        assert await analyser.link_state.get_value() is LinkState.CONNECTED
        assert await down.link_state.get_value() is LinkState.RECONNECTING
        assert await analyser.poll_rate_hz.get_value() == 2.0  # P:PollPeriod 0.5 s
        assert (await analyser.poll_rate_hz.describe())["analyser-poll_rate_hz"]["units"] == "Hz"
        await analyser.poll_rate_hz.set(4.0)
        try:
            assert await analyser.poll_period.get_value() == 0.25
            assert await analyser.poll_rate_hz.get_value() == 4.0
            with pytest.raises(ServomexValidationError, match="poll_rate_hz"):
                await analyser.poll_rate_hz.set(0.0)
            with pytest.raises(Exception, match=r"0\.01"):  # the IOC's bound: 0.05 s
                await analyser.poll_rate_hz.set(100.0)
            assert await analyser.poll_period.get_value() == 0.25
        finally:
            await analyser.poll_rate_hz.set(2.0)
        assert await analyser.poll_period.get_value() == 0.5

    keys: dict[str, Any] = {}

    async def describe() -> None:
        keys.update(await analyser.describe())

    RE(bps.wait_for([check, describe]))
    # not read into events, as on the direct device
    assert "analyser-i1-value" in keys
    assert not any("link_state" in k or "poll_rate" in k for k in keys)


def test_each_event_holds_one_frame(facility_ioc: FacilityIoc, RE: RunEngine) -> None:
    """Reads back to back while the IOC posts a frame every ~0.1 s, until 15 frames went
    by: every channel value in an event carries the timestamp of one frame (the IOC posts
    each value with every frame, stamped with the frame's time)."""
    with init_devices():
        analyser = RemoteServomexAnalyser("pva://SMX1:")
    fields = [f"analyser-{c}-value" for c in ("i1", "i2", "i3", "e1", "e2")]
    seen: set[float] = set()

    def plan() -> Any:
        yield from bps.mv(analyser.poll_rate_hz, 10.0)
        try:
            yield from bps.open_run()
            for _ in range(1000):
                yield from bps.create()
                reading = yield from bps.read(analyser)
                yield from bps.save()
                seen.add(reading["analyser-i1-value"]["timestamp"])
                if len(seen) >= 15:
                    break
            yield from bps.close_run()
        finally:
            yield from bps.mv(analyser.poll_rate_hz, 2.0)

    docs = _collect(RE, plan())
    events = [d for n, d in docs if n == "event"]
    stamps = [{e["timestamps"][f] for f in fields} for e in events]
    mixed = [sorted(s) for s in stamps if len(s) != 1]
    assert mixed == []
    assert len({next(iter(s)) for s in stamps}) >= 15  # the frames changed under the reads
    print(
        f"\n{len(seen)} frames in {len(events)} reads; {analyser.coherent_retries} reads repeated"
    )


def _disconnect(analyser: ServomexAnalyser) -> Any:
    """Close the direct device's port on the RunEngine's loop (frees the simulator)."""
    yield from bps.wait_for([lambda: asyncio.ensure_future(analyser.disconnect())])


def test_monitor_the_whole_device(facility_ioc: FacilityIoc, RE: RunEngine) -> None:
    with init_devices():
        analyser = ServomexAnalyser("pva://SMX1:")

    def plan() -> Any:
        yield from bps.open_run()
        yield from bps.monitor(analyser, name="smx1")
        yield from bps.sleep(2.0)
        yield from bps.unmonitor(analyser)
        yield from bps.close_run()

    docs = _collect(RE, plan())
    events = [d for n, d in docs if n == "event"]
    assert len(events) >= 2  # a frame every 0.5 s
    assert all(e["data"]["analyser-i1-value"] == 20.378 for e in events)
    assert "analyser-cal_group1" in _descriptor(docs, "smx1")["data_keys"]


def test_calibration_refused_by_an_ioc_without_allow_calibration(
    facility_ioc: FacilityIoc, RE: RunEngine
) -> None:
    from ophyd_servomex.plans import calibrate

    with init_devices():
        analyser = ServomexAnalyser("pva://SMX1:")
    with pytest.raises(Exception, match="--allow-calibration"):
        RE(calibrate(analyser, 1, confirm=True))


def test_calibrate_through_an_ioc_started_with_allow_calibration(
    calibration_ioc: CalibrationIoc, RE: RunEngine
) -> None:
    from ophyd_servomex.plans import calibrate

    with init_devices():
        smxcal = ServomexAnalyser("pva://SMXCAL:", calibration_poll_period=0.1)
    RE(calibrate(smxcal, 1, confirm=True))
    progress = smxcal.calibration.last_progress
    assert progress is not None
    assert progress.phase.value == "done"
    assert progress.fraction == 1.0
    log = calibration_ioc.ioc.log_text()
    assert "start calibration of group 1 asked by 127.0.0.1" in log
    assert "calibration of group 1 started" in log


CLIENT = textwrap.dedent(
    """
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd_async.core import init_devices
    from ophyd_servomex.devices import ServomexAnalyser

    RE = RunEngine({})
    with init_devices():
        analyser = ServomexAnalyser("pva://SMX1:")
    values = []
    RE(count([analyser], num=3), lambda name, doc: name == "event" and values.append(
        doc["data"]["analyser-i1-value"]))
    assert values == [20.378] * 3, values
    print("OK")
    """
)


def test_eight_client_processes_at_once(facility_ioc: FacilityIoc) -> None:
    clients = []
    try:
        for _ in range(8):
            clients.append(
                subprocess.Popen(
                    [sys.executable, "-c", CLIENT],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            )
        results = [c.communicate(timeout=200) for c in clients]
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    for client, (out, err) in zip(clients, results, strict=True):
        assert client.returncode == 0, err.decode()[-2000:]
        assert out.decode().strip() == "OK"
