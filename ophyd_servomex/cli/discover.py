"""``ophyd-servomex discover``: find analysers and the mode each one is in.

Without ports, lists this machine's serial ports and probes each; with ports (any form:
device paths, the simulator's pty or ``socket://…``), probes only those. On each port,
AUTO detection (docs/protocol.md §10) tries Modbus RTU and ASCII at the first ``--address``
and then listens for continuous frames; with several addresses, once a Modbus mode
answers the other addresses are asked in that mode (a multidrop line). Ports are probed at
the same time, and each result is printed as soon as it is known. Exit status 0 when an
analyser was found, 1 when none was.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from ..codec.errors import ServomexConnectionError, ServomexError
from ..codec.models import DeviceInfo, ProtocolKind
from ..codec.options import parse_protocol
from ._options import PORT_HELP, add_connection_options
from ._run import print_err, run_command, until_interrupted

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``discover`` sub-command."""
    parser = subparsers.add_parser(
        "discover",
        help="list serial ports and report the analyser mode found on each",
        description=(
            "List serial ports (or take the given ones) and find the analyser on each with "
            "AUTO detection: Modbus RTU, Modbus ASCII, then a passive listen for continuous "
            "frames."
        ),
    )
    parser.add_argument("ports", nargs="*", metavar="PORT", help=f"{PORT_HELP}; default: all")
    add_connection_options(parser, port=False, several_addresses=True)
    parser.add_argument(
        "--list-only", action="store_true", help="only list the serial ports, probe nothing"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return run_command("discover", _discover, args)


@dataclass(slots=True)
class _Found:
    """What was found on one port."""

    port: str
    protocol: ProtocolKind | None = None
    units: list[tuple[int | None, DeviceInfo | None]] = field(default_factory=list)
    problem: str | None = None


async def _discover(args: argparse.Namespace) -> int:
    from ..transport import list_ports

    ports: list[str] = list(args.ports)
    if not ports:
        listed = list_ports()
        if not listed:
            print("no serial ports found (give ports explicitly, e.g. socket://HOST:PORT)")
            return 1
        print(f"{len(listed)} serial port{'s' if len(listed) != 1 else ''}:")
        for info in listed:
            extra = "; ".join(t for t in (info.description, info.hwid) if t)
            print(f"  {info.device}" + (f"  ({extra})" if extra else ""))
        ports = [info.device for info in listed]
    if args.list_only:
        return 0
    found: list[_Found] = []
    _, interrupted = await until_interrupted(lambda: _probe_all(args, ports, found))
    analysers = sum(len(f.units) for f in found)
    if interrupted:
        print_err("interrupted")
    print_err(
        f"{analysers} analyser{'s' if analysers != 1 else ''} found on "
        f"{sum(1 for f in found if f.units)} of {len(ports)} port{'s' if len(ports) != 1 else ''}"
    )
    return 0 if analysers else 1


async def _probe_all(args: argparse.Namespace, ports: list[str], found: list[_Found]) -> None:
    import anyio

    from ..driver import listen_window

    count = f"{len(ports)} port{'s' if len(ports) != 1 else ''}"
    listed = ",".join(str(a) for a in args.address)
    if args.protocol == "auto":
        window = listen_window(args.period, max(args.timeout, 2.0))
        print_err(
            f"probing {count}: Modbus RTU and ASCII at address {args.address[0]}, then "
            f"listening {window:g} s for continuous frames…"
        )
    else:
        print_err(f"probing {count} in {args.protocol} at address {listed}…")

    async def probe(port: str) -> None:
        result = await _probe(args, port)
        found.append(result)
        print(_describe(result), flush=True)

    async with anyio.create_task_group() as task_group:
        for port in ports:
            task_group.start_soon(probe, port)


async def _probe(args: argparse.Namespace, port: str) -> _Found:
    from ._options import open_analyzer

    result = _Found(port)
    requested = parse_protocol(args.protocol)
    protocol: ProtocolKind | None = None if requested is ProtocolKind.AUTO else requested
    for address in args.address:
        try:
            async with open_analyzer(
                args, port=port, address=address, protocol=protocol or ProtocolKind.AUTO
            ) as analyzer:
                protocol = analyzer.protocol
                result.protocol = protocol
                result.units.append((analyzer.address, analyzer.info))
        except ServomexConnectionError as exc:
            result.problem = exc.message
            break  # the port itself is missing, busy or gone
        except ServomexError as exc:
            if not result.units:
                result.problem = exc.message
        if protocol is ProtocolKind.CONTINUOUS_ASCII:
            break  # the only talker on its line
    return result


def _describe(result: _Found) -> str:
    if not result.units:
        return f"{result.port}: nothing found — {result.problem or 'no answer'}"
    assert result.protocol is not None
    lines = [f"{result.port}: {result.protocol.value}"]
    for address, info in result.units:
        where = f"address {address}" if address is not None else "broadcasting"
        names = (
            ", ".join(f"{c.channel.value} {c.name} ({c.unit_text or '?'})" for c in info.populated)
            if info is not None
            else ""
        )
        lines.append(f"  {where}: {names or 'no named channels'}")
    return "\n".join(lines)
