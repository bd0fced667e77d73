#!/usr/bin/env python
"""Several analysers on one RS485 line: one ``ServomexBus``, one ``ServomexAnalyser`` each.

    python example_plans/rs485_bus.py --port /dev/ttyUSB0 --addresses 30,31,32 --num 10
    python example_plans/rs485_bus.py --sim

Only Modbus analysers can share a line (a continuous-mode unit talks on its own), each with
its own slave address set on its front panel. The bus owns the port; every transaction on
it is strictly one after the other, with the 50 ms of silence the analysers need in front
of each request, so each event's sweeps of all analysers take their turn on the wire.
"""

from __future__ import annotations

import sys

from _common import disconnect, example_parser, port_or_simulator


def _addresses(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def main(argv: list[str] | None = None) -> int:
    parser = example_parser(__doc__)
    parser.add_argument(
        "--addresses",
        type=_addresses,
        default=(30, 31, 32),
        help="comma-separated Modbus addresses on the line (default 30,31,32)",
    )
    parser.add_argument("--num", type=int, default=5, help="events (default 5)")
    args = parser.parse_args(argv)

    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd_async.plan_stubs import ensure_connected

    from ophyd_servomex import ProtocolKind, SerialSettings, ServomexAnalyser, ServomexBus
    from ophyd_servomex.catalog import close_catalog, open_catalog, run_table, subscribe_writer
    from ophyd_servomex.sim import SimConfig

    protocol = ProtocolKind(args.protocol)
    if not protocol.is_modbus:  # AUTO cannot probe a shared line: say the framing
        protocol = ProtocolKind.MODBUS_RTU
    sim = SimConfig(mode=protocol, addresses=args.addresses)
    with port_or_simulator(args, sim) as port:
        RE = RunEngine()
        catalog = open_catalog(args.catalog)
        subscribe_writer(RE, catalog)
        line = ServomexBus(
            port,
            protocol=protocol,
            serial_settings=SerialSettings(port, baudrate=args.baud),
            name="line",
        )
        by_address = {
            address: ServomexAnalyser(bus=line, address=address, name=f"gas{address}")
            for address in args.addresses
        }
        analysers = list(by_address.values())
        RE(ensure_connected(line, *analysers))  # the line opens once, then each analyser
        try:
            (uid,) = RE(count(analysers, num=args.num))
        finally:
            disconnect(line)  # disconnects the analysers on it, then closes the port

        table = run_table(catalog[uid])
        print(f"run {uid[:8]}: {len(table)} events, {len(analysers)} analysers on {port}")
        for address, analyser in by_address.items():
            column = f"{analyser.name}-i1-value"
            if column in table:
                mean = table[column].mean()
                print(f"  {analyser.name} at address {address}: I1 mean {mean:.3f}")
        close_catalog(catalog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
