"""A failure of the OS under a port is a ServomexConnectionError naming the port, on every path.

A USB-serial adapter pulled mid-session makes ``tcflush`` raise ``termios.error(5, EIO)``,
which is no ``OSError``; reads and writes raise ``OSError`` (EIO, ENXIO, EBADF). Each must
reach the caller — ``poll()``, ``stream()``, ``record(auto_reconnect=True)`` — as a typed
``ServomexConnectionError`` with the port in its message and context, and the errno kept
as the cause.
"""

from __future__ import annotations

import errno
import fcntl
import os
import termios
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from anyserial import SerialPort

from ophyd_servomex.codec.errors import ServomexConnectionError
from ophyd_servomex.codec.models import ProtocolKind, SerialSettings
from ophyd_servomex.driver import Analyzer, record
from ophyd_servomex.sim import SimConfig, serve_pty
from ophyd_servomex.transport import LinkLostError, open_pty_pair, open_transport

pytestmark = pytest.mark.anyio

TIOCGEXCL = 0x80045440  # Linux: is the tty held with TIOCEXCL?

OS_FAILURES: dict[str, Callable[[], BaseException]] = {
    "termios EIO": lambda: termios.error(errno.EIO, "Input/output error"),
    "OSError EIO": lambda: OSError(errno.EIO, "Input/output error"),
    "OSError ENXIO": lambda: OSError(errno.ENXIO, "No such device or address"),
    "OSError EBADF": lambda: OSError(errno.EBADF, "Bad file descriptor"),
}
METHODS = {
    "reset_input_buffer": (),
    "drain": (),
    "send": (b"\x01",),
    "receive": (),
    "send_eof": (),
    "aclose": (),
}


def _failing(exc_factory: Callable[[], BaseException]) -> Callable[..., Any]:
    async def fail(self: object, *args: object, **kwargs: object) -> None:
        raise exc_factory()

    return fail


@pytest.mark.parametrize("failure", OS_FAILURES, ids=list(OS_FAILURES))
@pytest.mark.parametrize("method", METHODS, ids=list(METHODS))
async def test_every_os_failure_on_every_call_is_a_typed_connection_error(
    failure: str, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_pty_pair() as pair:
        client = await open_transport(pair.path)
        monkeypatch.setattr(type(client.serial_port), method, _failing(OS_FAILURES[failure]))
        with pytest.raises(ServomexConnectionError) as info:
            await getattr(client, method)(*METHODS[method])
        error = info.value
        assert pair.path in str(error)
        assert error.context.port == pair.path
        cause = error.__cause__
        assert cause is not None
        assert (cause.errno if isinstance(cause, OSError) else cause.args[0]) in (
            errno.EIO,
            errno.ENXIO,
            errno.EBADF,
        )
        assert f"[Errno {cause.errno if isinstance(cause, OSError) else cause.args[0]}]" in str(
            error
        )
        monkeypatch.undo()
        await client.aclose()


def _port_class() -> type[SerialPort]:
    """The concrete anyserial port class this platform opens."""
    from anyserial.stream import _PosixSerialPort

    return _PosixSerialPort


async def test_a_pulled_adapter_during_poll_is_a_connection_error_naming_the_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = SimConfig(mode=ProtocolKind.MODBUS_RTU, addresses=(30,), noisy=False)
    async with (
        serve_pty(config) as sim,
        Analyzer(sim.port, protocol=ProtocolKind.MODBUS_RTU, address=30, timeout=0.5) as anz,
    ):
        await anz.poll()  # healthy first
        monkeypatch.setattr(
            _port_class(), "reset_input_buffer", _failing(OS_FAILURES["termios EIO"])
        )
        with pytest.raises(ServomexConnectionError) as info:
            await anz.poll()
        assert sim.port in str(info.value)
        assert info.value.context.port == sim.port
        assert info.value.context.address == 30
        monkeypatch.undo()


async def test_record_reconnects_after_a_termios_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    config = SimConfig(mode=ProtocolKind.MODBUS_RTU, addresses=(30,), noisy=False)
    broken = {"armed": False}
    port_class = _port_class()
    original = port_class.reset_input_buffer

    async def flaky(self: SerialPort) -> None:
        if broken["armed"]:
            broken["armed"] = False  # fail once: the adapter comes back
            raise termios.error(errno.EIO, "Input/output error")
        await original(self)

    monkeypatch.setattr(port_class, "reset_input_buffer", flaky)
    async with serve_pty(config) as sim:

        def factory() -> Analyzer:
            return Analyzer(sim.port, protocol=ProtocolKind.MODBUS_RTU, address=30, timeout=0.5)

        batches = []
        async with record(
            None, rate_hz=10, duration=1.0, auto_reconnect=True, reconnect_factory=factory
        ) as rec:
            async for batch in rec.stream:
                if len(batches) == 2:
                    broken["armed"] = True
                batches.append(batch)
    errors = [s.error for b in batches for s in b if s.error is not None]
    assert len(errors) == 1
    assert isinstance(errors[0], ServomexConnectionError)
    assert sim.port in str(errors[0])
    assert rec.summary.disconnects == 1
    assert rec.summary.reconnects == 1
    failed_at = next(i for i, b in enumerate(batches) if not b[0].ok)
    assert failed_at >= 2
    assert all(s.ok for b in batches[failed_at + 1 :] for s in b)  # polling again after it
    assert len(batches) > failed_at + 1
    # every slot of the second is accounted for: emitted, or missed while reopening
    assert rec.summary.samples_emitted + rec.summary.missed_ticks == 10


async def test_a_serial_port_is_held_with_tiocexcl_and_released_on_close() -> None:
    async with open_pty_pair() as pair:
        client = await open_transport(pair.path)
        fd = client.extra(anyio.streams.file.FileStreamAttribute.fileno)
        held = bytearray(4)
        fcntl.ioctl(fd, TIOCGEXCL, held)
        assert int.from_bytes(held, "little") == 1
        await client.aclose()
        # another program may open it again now (non-root would have got EBUSY before)
        fd2 = os.open(pair.path, os.O_RDWR | os.O_NOCTTY)
        os.close(fd2)


async def test_exclusive_false_takes_no_hold() -> None:
    async with open_pty_pair() as pair:
        client = await open_transport(pair.path, SerialSettings(pair.path, exclusive=False))
        fd = client.extra(anyio.streams.file.FileStreamAttribute.fileno)
        held = bytearray(4)
        fcntl.ioctl(fd, TIOCGEXCL, held)
        assert int.from_bytes(held, "little") == 0
        await client.aclose()


async def test_a_vanished_device_node_is_a_connection_error() -> None:
    async with open_pty_pair() as pair:
        path = pair.path
    with pytest.raises(ServomexConnectionError) as info:
        await open_transport(path)
    assert path in str(info.value)
    assert not isinstance(info.value, LinkLostError)
