"""Shared pieces of the device commands (``read``, ``stream``, ``discover``, ``capture``,
``diag``): the connection options, opening an analyser or a manager, a clean stop on
Ctrl-C, error reporting, and the text/JSON/CSV renderings of frames and samples.

Imports stay light at module level (the codec only): the driver and anyio are imported
inside the functions that need them, so ``ophyd-servomex --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import signal
import statistics
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from ..codec.errors import ServomexError, ServomexValidationError
from ..codec.models import ChannelStatus, Frame, ProtocolKind, Reading, SerialSettings, Unit
from ..codec.status_text import STATUS_OK, status_text

if TYPE_CHECKING:
    from ..driver import Analyzer, ServomexManager

__all__ = [
    "PROTOCOLS",
    "Timing",
    "add_connection_options",
    "flags_text",
    "format_frame_table",
    "frame_to_dict",
    "open_analyzer",
    "open_manager",
    "positive_float",
    "protocol_choices",
    "protocol_type",
    "run_command",
    "serial_settings",
    "timing",
    "until_interrupted",
    "value_text",
]

PROTOCOLS = tuple(p.value for p in ProtocolKind)
"""``auto``, ``continuous``, ``modbus-rtu``, ``modbus-ascii``."""

PROTOCOL_ALIASES = {"rtu": ProtocolKind.MODBUS_RTU.value, "ascii": ProtocolKind.MODBUS_ASCII.value}
"""The short names users type for the two Modbus modes."""

PORT_HELP = (
    "the port: a serial device (/dev/ttyUSB0, COM3), a pseudo-terminal such as the "
    "simulator's /dev/pts/N, socket://HOST:PORT or rfc2217://HOST:PORT"
)


# --- argument types -----------------------------------------------------------------------


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number ≥ 0: {text!r}")
    return value


def protocol_choices(choices: Sequence[str] = PROTOCOLS) -> str:
    """``auto, continuous, modbus-rtu (rtu), modbus-ascii (ascii)``: the choices for help
    and errors, each long name with its short one."""
    short = {long: alias for alias, long in PROTOCOL_ALIASES.items()}
    return ", ".join(f"{c} ({short[c]})" if c in short else c for c in choices)


def protocol_type(choices: Sequence[str] = PROTOCOLS) -> Callable[[str], str]:
    """An argparse type for ``--protocol``: a name among ``choices`` or its short name
    (``rtu``, ``ascii``), any case; returns the long name (a :class:`ProtocolKind` value)."""

    def parse(text: str) -> str:
        key = text.strip().lower().replace("_", "-")
        key = PROTOCOL_ALIASES.get(key, key)
        if key not in choices:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {protocol_choices(choices)})"
            )
        return key

    parse.__name__ = "protocol"  # argparse names the type in some messages
    return parse


def addresses(text: str) -> tuple[int, ...]:
    """An argparse type: one Modbus address or a comma list (``30`` or ``30,31``)."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"addresses must be integers: {text!r}") from None
    if not values or any(not 1 <= a <= 247 for a in values):
        raise argparse.ArgumentTypeError(f"addresses must be 1–247: {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"addresses must be distinct: {text!r}")
    return values


def single_address(text: str) -> int:
    """An argparse type: one Modbus address 1–247."""
    values = addresses(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"one address only: {text!r}")
    return values[0]


def add_connection_options(
    parser: argparse.ArgumentParser, *, port: bool = True, several_addresses: bool = False
) -> None:
    """Add the port and ``--protocol --address --baud --timeout --period --idle``."""
    if port:
        parser.add_argument("port", help=PORT_HELP)
    parser.add_argument(
        "--protocol",
        type=protocol_type(),
        default="auto",
        metavar="PROTOCOL",
        help=f"the analyser's front-panel mode: {protocol_choices()}, any case; auto detects "
        "it (default auto)",
    )
    if several_addresses:
        parser.add_argument(
            "--address",
            type=addresses,
            default=(1,),
            metavar="ADDR[,ADDR…]",
            help="Modbus slave address (the bench 4100D uses 30); several, comma-separated, "
            "share one RS485 line and need --protocol modbus-rtu or modbus-ascii (default 1)",
        )
    else:
        parser.add_argument(
            "--address",
            type=single_address,
            default=1,
            metavar="ADDR",
            help="Modbus slave address 1–247 (the bench 4100D uses 30; default 1)",
        )
    parser.add_argument(
        "--baud", type=int, default=19200, help="baud rate, 2400–19200 (default 19200, 8-N-1)"
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="seconds per Modbus attempt (default 1)",
    )
    parser.add_argument(
        "--period",
        type=positive_float,
        default=2.0,
        metavar="SECONDS",
        help="the continuous frame period set on the panel; AUTO listens two periods (default 2)",
    )
    parser.add_argument(
        "--idle",
        type=non_negative_float,
        default=0.05,
        metavar="SECONDS",
        help="line silence before each Modbus request (default 0.05, what the analyser needs)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log the driver's work to stderr (-v info, -vv debug; default: warnings only, "
        "and no per-attempt Modbus retry messages)",
    )


def serial_settings(args: argparse.Namespace) -> SerialSettings:
    """The serial settings from ``--baud`` (8-N-1)."""
    return SerialSettings(getattr(args, "port", "") or "", baudrate=args.baud)


def open_analyzer(
    args: argparse.Namespace,
    *,
    port: str | None = None,
    address: int | None = None,
    protocol: ProtocolKind | str | None = None,
    identify: bool = True,
) -> Analyzer:
    """An :class:`Analyzer` for the parsed options (enter it with ``async with``).

    The CLI builds the :class:`Analyzer` itself rather than through ``open_device``: it
    also passes the tuning options (frame period, Modbus idle gap) the commands expose.
    """
    from ..driver import Analyzer

    chosen = args.address if address is None else address
    if isinstance(chosen, tuple):
        chosen = chosen[0]
    return Analyzer(
        args.port if port is None else port,
        protocol=args.protocol if protocol is None else protocol,
        address=chosen,
        serial_settings=serial_settings(args),
        timeout=args.timeout,
        expected_period=args.period,
        inter_frame_idle=args.idle,
        identify=identify,
    )


async def open_manager(args: argparse.Namespace, manager: ServomexManager) -> None:
    """Add one analyser per ``--address`` on ``args.port`` to an entered manager.

    Each is named ``a<address>``; the protocol must be a Modbus mode.
    """
    for address in args.address:
        await manager.add(
            f"a{address}",
            args.port,
            protocol=args.protocol,
            address=address,
            serial_settings=serial_settings(args),
            timeout=args.timeout,
        )


def several(args: argparse.Namespace) -> bool:
    """True when ``--address`` named more than one analyser."""
    return isinstance(args.address, tuple) and len(args.address) > 1


# --- running, stopping and failing --------------------------------------------------------


def run_command(
    prog: str, main: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace
) -> int:
    """Run ``main(args)`` in an event loop; report a :class:`ServomexError` as one line."""
    import anyio

    try:
        with _logging(getattr(args, "verbose", 0)):
            return anyio.run(main, args)
    except ServomexError as exc:
        print(f"ophyd-servomex {prog}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (``… | head``): stop quietly
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


@contextlib.contextmanager
def _logging(verbose: int) -> Iterator[None]:
    """Log to stderr at the level ``-v`` asks for; quiet anymodbus's per-attempt retries
    unless verbose (restored afterwards, for callers of ``cli.main`` in-process)."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    retries = logging.getLogger("anymodbus")
    saved = retries.level
    if verbose <= 0 and saved == logging.NOTSET:
        retries.setLevel(logging.ERROR)
    try:
        yield
    finally:
        retries.setLevel(saved)


async def until_interrupted[T](body: Callable[[], Awaitable[T]]) -> tuple[T | None, bool]:
    """Run ``body()`` until it returns or SIGINT/SIGTERM arrives.

    Returns ``(result, interrupted)``; on a signal the body is cancelled (its ``async
    with`` blocks close the port cleanly) and the result is ``None``. Errors from the body
    are raised as they are.
    """
    import anyio

    interrupted = False
    result: T | None = None
    error: Exception | None = None
    async with anyio.create_task_group() as task_group:

        async def watch() -> None:
            nonlocal interrupted
            try:
                receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                return
            with receiver as signals:
                async for _signum in signals:
                    interrupted = True
                    task_group.cancel_scope.cancel()
                    return

        task_group.start_soon(watch)
        try:
            result = await body()
        except Exception as exc:
            error = exc
        finally:
            task_group.cancel_scope.cancel()
    if error is not None:
        raise error
    return result, interrupted


# --- rendering ----------------------------------------------------------------------------


def value_text(reading: Reading) -> str:
    """A reading's value as the analyser shows it (3 decimals, mA 1), or ``-``."""
    if reading.value is None:
        return "-"
    decimals = 1 if reading.unit is Unit.MILLIAMP else 3
    return f"{reading.value:.{decimals}f}"


def flags_text(status: ChannelStatus, *, none: str = STATUS_OK) -> str:
    """The active flags (the status string: ``fault maint cal warm-up A1`` …), else ``none``."""
    text = status_text(status)
    return none if text == STATUS_OK else text


def format_frame_table(frame: Frame) -> str:
    """The analyser's state and one row per channel."""
    analyser = frame.analyser
    state = [
        name
        for name, on in (("FAULT", analyser.fault), ("MAINTENANCE", analyser.maintenance))
        if on
    ]
    calibrating = [
        f"group {g.group} (gas {g.cal_gas})" for g in analyser.cal_groups if g.calibrating
    ]
    lines = [
        f"analyser: {' '.join(state) or 'ok'}; calibrating: {', '.join(calibrating) or 'none'}",
        f"{'id':<3} {'name':<7} {'value':>9} {'unit':<4} status",
    ]
    for reading in frame.readings:
        name = reading.name if reading.name is not None else "-"
        lines.append(
            f"{reading.channel.value:<3} {name:<7} {value_text(reading):>9} "
            f"{reading.unit_text:<4} {flags_text(reading.status)}"
        )
    return "\n".join(lines)


def frame_to_dict(frame: Frame) -> dict[str, Any]:
    """A JSON-ready rendering of a frame (full float precision)."""
    return {
        "time": frame.timestamp,
        "protocol": frame.protocol.value,
        "address": frame.address,
        "analyser": {
            "fault": frame.analyser.fault,
            "maintenance": frame.analyser.maintenance,
            "calibrating": [g.group for g in frame.analyser.cal_groups if g.calibrating],
        },
        "channels": {
            r.channel.value: {
                "name": r.name,
                "value": r.value,
                "unit": r.unit_text,
                "ok": r.status.ok,
                "flags": [] if flags_text(r.status) == "ok" else flags_text(r.status).split(),
            }
            for r in frame.readings
        },
    }


# --- timing statistics --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timing:
    """Statistics of a set of durations, in seconds."""

    count: int
    minimum: float
    p50: float
    p99: float
    maximum: float
    mean: float
    jitter: float
    """The standard deviation (0 for fewer than two values)."""

    def describe(self, scale: float = 1000.0, unit: str = "ms") -> str:
        """``min … p50 … p99 … max … mean … jitter …`` in ``unit``."""
        fields = (
            ("min", self.minimum),
            ("p50", self.p50),
            ("p99", self.p99),
            ("max", self.maximum),
            ("mean", self.mean),
            ("jitter (stdev)", self.jitter),
        )
        return ", ".join(f"{name} {value * scale:.2f} {unit}" for name, value in fields)


def timing(values: Sequence[float]) -> Timing:
    """Min, p50, p99, max, mean and jitter of ``values`` (at least one)."""
    from ..driver.record import percentile

    if not values:
        raise ServomexValidationError("no timings to summarise")
    p50 = percentile(values, 0.5)
    p99 = percentile(values, 0.99)
    assert p50 is not None
    assert p99 is not None
    return Timing(
        count=len(values),
        minimum=min(values),
        p50=p50,
        p99=p99,
        maximum=max(values),
        mean=statistics.fmean(values),
        jitter=statistics.pstdev(values) if len(values) > 1 else 0.0,
    )


def print_err(*parts: object, file: TextIO | None = None) -> None:
    """Print to stderr (or ``file``) and flush: progress lines must show at once."""
    print(*parts, file=file or sys.stderr, flush=True)
