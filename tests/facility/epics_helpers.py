"""EPICS helpers for the facility tests: private loopback ports, simulator and IOC processes.

Every process is started in its own session (process group) and stopped by its fixture or
helper, SIGTERM first, then SIGKILL. The IOC and the clients in this test process use
private CA and PVA ports on 127.0.0.1 so parallel runs and other EPICS servers on the
machine do not collide.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PYTHON = sys.executable
START_TIMEOUT = 60.0
"""Seconds an IOC may take to serve its first value on a loaded 2-core machine."""


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


@dataclass(frozen=True)
class EpicsPorts:
    """One IOC's private ports: CA (UDP search + TCP), PVA TCP and PVA UDP search."""

    ca: int
    pva: int
    pva_broadcast: int

    @classmethod
    def allocate(cls) -> EpicsPorts:
        """Three distinct free ports."""
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        ca, pva, broadcast = sorted(ports)
        return cls(ca, pva, broadcast)

    def server_env(self) -> dict[str, str]:
        """The environment of an IOC serving on these ports, on loopback only."""
        return {
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_ADDR_LIST": f"127.0.0.1:{self.ca}",
            "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
            "EPICS_CA_SERVER_PORT": str(self.ca),
            "EPICS_CAS_SERVER_PORT": str(self.ca),
            "EPICS_CA_REPEATER_PORT": str(self.ca + 1 if self.ca < 65535 else self.ca - 1),
            "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVA_ADDR_LIST": f"127.0.0.1:{self.pva_broadcast}",
            "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
            "EPICS_PVA_SERVER_PORT": str(self.pva),
            "EPICS_PVAS_SERVER_PORT": str(self.pva),
            "EPICS_PVA_BROADCAST_PORT": str(self.pva_broadcast),
            "EPICS_PVAS_BROADCAST_PORT": str(self.pva_broadcast),
        }


def client_env(*servers: EpicsPorts) -> dict[str, str]:
    """The environment of a client that finds every one of ``servers`` on loopback."""
    return {
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": " ".join(f"127.0.0.1:{s.ca}" for s in servers),
        "EPICS_CA_REPEATER_PORT": str(servers[0].ca + 1),
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVA_ADDR_LIST": " ".join(f"127.0.0.1:{s.pva_broadcast}" for s in servers),
        "EPICS_PVA_BROADCAST_PORT": str(servers[0].pva_broadcast),
    }


def _stop(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


class SimProcess:
    """``ophyd-servomex sim`` in a subprocess (exact values: ``--no-noise``)."""

    def __init__(self, *args: str, log: Path) -> None:
        self.log = log
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "ophyd_servomex.cli", "sim", "--no-noise", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        if not line:
            self.stop()
            raise RuntimeError(f"the simulator printed no port; see {log}")
        self.port = line

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; closes the log."""
        try:
            _stop(self.process)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
            self._log.close()


class IocProcess:
    """``ophyd-servomex ioc`` in a subprocess with its own ports; ``log`` gets its stderr."""

    def __init__(self, args: list[str], ports: EpicsPorts, log: Path) -> None:
        self.ports = ports
        self.log = log
        self._log = log.open("ab")
        env = {**os.environ, **ports.server_env(), "PYTHONUNBUFFERED": "1"}
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [PYTHON, "-m", "ophyd_servomex.cli", "ioc", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def log_text(self) -> str:
        """What the IOC has logged so far."""
        self._log.flush()
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; closes the log."""
        try:
            _stop(self.process)
        finally:
            self._log.close()


def pva_context(ports: EpicsPorts) -> Any:
    """A p4p client context that reaches exactly ``ports`` (not the process environment)."""
    from p4p.client.thread import Context

    conf = {
        "EPICS_PVA_ADDR_LIST": f"127.0.0.1:{ports.pva_broadcast}",
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVA_BROADCAST_PORT": str(ports.pva_broadcast),
    }
    return Context("pva", conf=conf, useenv=False)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call ``predicate()`` until it returns something true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # a PV not served yet, a timeout
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def pv_get(ctx: Any, name: str, timeout: float = 5.0) -> Any:
    """One PVA get (raises on timeout)."""
    return ctx.get(name, timeout=timeout)


class CaClient:
    """aioca on one event loop of its own (aioca keeps its channels bound to a loop)."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()

    def get(self, name: str, *, ctrl: bool = False) -> Any:
        """``caget`` with time (or control) metadata: ``.severity``, ``.units`` …"""
        from aioca import FORMAT_CTRL, FORMAT_TIME, caget

        form = FORMAT_CTRL if ctrl else FORMAT_TIME
        return self.loop.run_until_complete(caget(name, format=form, timeout=10))

    def text(self, name: str) -> str:
        """A FastCS string PV over CA (it arrives as a char array)."""
        return bytes(self.get(name)).split(b"\0", 1)[0].decode()

    def put(self, name: str, data: Any) -> Any:
        """``caput`` waiting for the record to process."""
        from aioca import caput

        return self.loop.run_until_complete(caput(name, data, wait=True, timeout=10))


def value(ctx: Any, name: str) -> Any:
    """A PV's plain value over PVA."""
    reading = pv_get(ctx, name)
    return reading.raw.value if hasattr(reading, "raw") else reading["value"]


def text(ctx: Any, name: str) -> str:
    """A string PV's value over PVA."""
    return str(value(ctx, name))


def is_nan(value: Any) -> bool:
    """True for a float NaN."""
    return isinstance(value, float) and math.isnan(value)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, restoring the old values after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


# --- the session's IOC ------------------------------------------------------------------


@dataclass
class FacilityIoc:
    """The session IOC: ``SMX1:`` on a pty simulator (Modbus RTU, address 30),
    ``SMX2:`` on ``socket://127.0.0.1:<sim2_port>``, where no simulator runs until a test
    starts one (:meth:`start_sim2`), and ``SMX3:``/``SMX4:`` at addresses 31 and 32 on one
    simulated RS485 bus."""

    ioc: IocProcess
    sim1: SimProcess
    bus: SimProcess
    sim2_port: int
    workdir: Path
    first_value_seconds: float
    sim2: SimProcess | None = None

    @property
    def ports(self) -> EpicsPorts:
        """The IOC's EPICS ports."""
        return self.ioc.ports

    def start_sim2(self) -> SimProcess:
        """Start the simulator behind ``SMX2:`` on its fixed TCP port."""
        self.stop_sim2()
        self.sim2 = SimProcess(
            "--mode", "modbus-rtu", "--address", "30", "--tcp", str(self.sim2_port),
            log=self.workdir / "sim2.log",
        )  # fmt: skip
        return self.sim2

    def stop_sim2(self) -> None:
        """Stop the ``SMX2:`` simulator if it runs."""
        if self.sim2 is not None:
            self.sim2.stop()
            self.sim2 = None


IOC_CONFIG = """\
[[analyser]]
prefix = "SMX1:"
port = "{pty}"
protocol = "modbus-rtu"
address = 30
poll_period = 0.5
timeout = 2.0
inter_frame_idle = 0.005

[[analyser]]
prefix = "SMX2:"
port = "socket://127.0.0.1:{tcp}"
protocol = "modbus-rtu"
address = 30
channels = ["I1", "I2", "I3", "E1", "E2"]
poll_period = 0.5
timeout = 0.5
inter_frame_idle = 0.005

[[analyser]]
prefix = "SMX3:"
port = "{bus}"
protocol = "modbus-rtu"
address = 31
poll_period = 0.5
timeout = 2.0
inter_frame_idle = 0.005

[[analyser]]
prefix = "SMX4:"
port = "{bus}"
protocol = "modbus-rtu"
address = 32
poll_period = 0.5
timeout = 2.0
inter_frame_idle = 0.005
"""


def first_value(ctx: Any, pv: str, timeout: float = 2.0) -> bool:
    """True once ``pv`` holds a real number with no INVALID alarm and the IOC has published
    a whole frame (the prefix's ``Frames`` counts after the last PV of a frame)."""
    reading = pv_get(ctx, pv, timeout=timeout)
    frames = int(pv_get(ctx, pv.split(":")[0] + ":Frames", timeout=timeout))
    return not is_nan(float(reading)) and reading.severity != 3 and frames >= 1


def wait_first_value(ioc: IocProcess, pv: str, timeout: float = START_TIMEOUT) -> float:
    """Seconds from the IOC's start until ``pv`` holds a whole frame over PVA.

    Each try uses a fresh client context and a short timeout: a context that once searched
    in vain backs its searches off, which made the figure lag the server by up to 2 s.
    """
    deadline = ioc.started + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if not ioc.alive():
            pytest.fail(f"the IOC exited with {ioc.process.returncode}; see {ioc.log}")
        ctx = pva_context(ioc.ports)
        try:
            if first_value(ctx, pv, timeout=0.3):
                return time.monotonic() - ioc.started
        except Exception as exc:  # not served yet
            last = exc
        finally:
            ctx.close()
        time.sleep(0.02)
    pytest.fail(f"no first value of {pv} within {timeout} s (last: {last!r}); see {ioc.log}")


@pytest.fixture(scope="session")
def epics_ports() -> Iterator[tuple[EpicsPorts, EpicsPorts]]:
    """Private ports for the session IOC and the calibration IOC; this process's EPICS
    clients (p4p, aioca, ophyd-async) are pointed at both for the whole session, since
    their contexts read the environment once."""
    main, calibration = EpicsPorts.allocate(), EpicsPorts.allocate()
    with environment(client_env(main, calibration)):
        yield main, calibration


@pytest.fixture(scope="session")
def facility_ioc(
    tmp_path_factory: pytest.TempPathFactory, epics_ports: tuple[EpicsPorts, EpicsPorts]
) -> Iterator[FacilityIoc]:
    """The session IOC (see :class:`FacilityIoc`)."""
    workdir = tmp_path_factory.mktemp("ioc")
    sim1 = SimProcess("--mode", "modbus-rtu", "--address", "30", log=workdir / "sim1.log")
    bus = SimProcess("--mode", "modbus-rtu", "--address", "31,32", log=workdir / "bus.log")
    ioc: IocProcess | None = None
    facility: FacilityIoc | None = None
    try:
        sim2_port = free_port()
        config = workdir / "analysers.toml"
        config.write_text(IOC_CONFIG.format(pty=sim1.port, tcp=sim2_port, bus=bus.port))
        ports = epics_ports[0]
        ioc = IocProcess(["--config", str(config)], ports, workdir / "ioc.log")
        first = wait_first_value(ioc, "SMX1:I1:Value")
        print(f"\nIOC start → first whole frame over PVA: {first:.2f} s", file=sys.stderr)
        (workdir / "first_value_seconds").write_text(f"{first:.3f}\n")
        facility = FacilityIoc(ioc, sim1, bus, sim2_port, workdir, first)
        yield facility
    finally:
        if facility is not None:
            facility.stop_sim2()
        if ioc is not None:
            ioc.stop()
        sim1.stop()
        bus.stop()


@dataclass
class CalibrationIoc:
    """An IOC started with ``--allow-calibration`` serving ``SMXCAL:`` on a fast simulator."""

    ioc: IocProcess
    sim: SimProcess


@pytest.fixture(scope="module")
def calibration_ioc(
    tmp_path_factory: pytest.TempPathFactory, epics_ports: tuple[EpicsPorts, EpicsPorts]
) -> Iterator[CalibrationIoc]:
    """``ophyd-servomex ioc --allow-calibration --prefix SMXCAL:`` on a simulator whose
    time runs 60× fast (a calibration takes a few seconds)."""
    workdir = tmp_path_factory.mktemp("calioc")
    sim = SimProcess(
        "--mode", "modbus-rtu", "--address", "30", "--time-scale", "60",
        log=workdir / "sim.log",
    )  # fmt: skip
    ioc: IocProcess | None = None
    try:
        ports = epics_ports[1]
        args = [
            "--prefix", "SMXCAL:", "--protocol", "modbus-rtu", "--address", "30",
            "--poll-period", "0.25", "--timeout", "0.5", "--idle", "0.005",
            "--allow-calibration", sim.port,
        ]  # fmt: skip
        ioc = IocProcess(args, ports, workdir / "ioc.log")
        wait_first_value(ioc, "SMXCAL:I1:Value")
        yield CalibrationIoc(ioc, sim)
    finally:
        if ioc is not None:
            ioc.stop()
        sim.stop()
