"""A simulated SERVOPRO 4100 that speaks all three modes (continuous, Modbus RTU, ASCII).

* :class:`SimAnalyser` — the analyser's state (channels, values, status, coils, autocal),
  pure and time-driven; :func:`bench_channels` is the bench unit.
* :class:`ContinuousBroadcaster` and :class:`ModbusSlave` — speak the wire protocol over
  any anyio byte stream, with fault injection (:class:`Fault`) and a wire log.
* :func:`serve_pty`, :func:`serve_tcp`, :func:`serve_memory` — async context managers
  serving a :class:`SimConfig`; :class:`SimulatorThread` runs one in its own thread.
"""

from .analyser import COIL_COUNT, SimAnalyser
from .autocal import DEFAULT_FLUSH_TIME, Autocal, CalLogEntry
from .broadcaster import ContinuousBroadcaster
from .channels import SimAlarm, SimChannel, bench_channels
from .dispatch import answer
from .faults import DEFAULT_GARBAGE, Delivery, Fault, FaultInjector, Framing, apply_fault
from .modbus import DEFAULT_MIN_GAP, DEFAULT_TURNAROUND, ModbusSlave
from .server import MemorySimHandle, SimConfig, SimHandle, serve_memory, serve_pty, serve_tcp
from .splitter import AsciiRequestSplitter, Received, RtuRequestSplitter
from .thread import SimulatorThread
from .wirelog import DEFAULT_LOG_SIZE, Direction, WireEvent, WireKind, WireLog

__all__ = [
    "COIL_COUNT",
    "DEFAULT_FLUSH_TIME",
    "DEFAULT_GARBAGE",
    "DEFAULT_LOG_SIZE",
    "DEFAULT_MIN_GAP",
    "DEFAULT_TURNAROUND",
    "AsciiRequestSplitter",
    "Autocal",
    "CalLogEntry",
    "ContinuousBroadcaster",
    "Delivery",
    "Direction",
    "Fault",
    "FaultInjector",
    "Framing",
    "MemorySimHandle",
    "ModbusSlave",
    "Received",
    "RtuRequestSplitter",
    "SimAlarm",
    "SimAnalyser",
    "SimChannel",
    "SimConfig",
    "SimHandle",
    "SimulatorThread",
    "WireEvent",
    "WireKind",
    "WireLog",
    "answer",
    "apply_fault",
    "bench_channels",
    "serve_memory",
    "serve_pty",
    "serve_tcp",
]
