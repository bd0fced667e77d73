"""The device commands' connection options (``port --protocol --address --baud --timeout
--period --idle -v``), their argparse types, and opening an analyser or a manager with them.

Imports stay light at module level (the codec only): the driver is imported inside the
functions that need it, so ``ophyd-servomex --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..codec.checks import check_address, check_non_negative, check_positive
from ..codec.errors import ServomexValidationError
from ..codec.models import ProtocolKind, SerialSettings

if TYPE_CHECKING:
    from ..driver import Analyzer, ServomexManager

__all__ = [
    "PORT_HELP",
    "PROTOCOLS",
    "PROTOCOL_ALIASES",
    "add_connection_options",
    "addresses",
    "non_negative_float",
    "open_analyzer",
    "open_manager",
    "positive_float",
    "positive_int",
    "protocol_choices",
    "protocol_type",
    "serial_settings",
    "several",
    "single_address",
]

PROTOCOLS = tuple(p.value for p in ProtocolKind)
"""``auto``, ``continuous``, ``modbus-rtu``, ``modbus-ascii``."""

PROTOCOL_ALIASES = {"rtu": ProtocolKind.MODBUS_RTU.value, "ascii": ProtocolKind.MODBUS_ASCII.value}
"""The short names users type for the two Modbus modes."""

PORT_HELP = (
    "the port: a serial device (/dev/ttyUSB0, COM3), a pseudo-terminal such as the "
    "simulator's /dev/pts/N, socket://HOST:PORT or rfc2217://HOST:PORT"
)


def _number(text: str, check: Callable[[str, object], float], rule: str) -> float:
    """``text`` as a float that passes the codec's ``check``, or an argparse error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return check("value", value)
    except ServomexValidationError:
        raise argparse.ArgumentTypeError(f"{rule}: {text!r}") from None


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    return _number(text, check_positive, "must be > 0")


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number ≥ 0."""
    return _number(text, check_non_negative, "must be ≥ 0")


def positive_int(text: str) -> int:
    """An argparse type: a whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1: {text!r}")
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
    if not values:
        raise argparse.ArgumentTypeError(f"addresses must be 1–247: {text!r}")
    for value in values:
        try:
            check_address(value)
        except ServomexValidationError as exc:
            raise argparse.ArgumentTypeError(f"{exc.message}: {text!r}") from None
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
