"""Hundreds of callers cancelled at random points mid-transaction: the wire stays clean.

ophyd-async cancels with ``asyncio.wait_for``; anyio code with cancel scopes. Either way
a cancelled caller must only abandon its reply: every request the simulator receives is
whole, each is answered before the next one starts, and sweeps are never cut in half.
"""

from __future__ import annotations

import asyncio
import random

import anyio
import pytest
from driverhelpers import ADDRESS, bench_values, quiet_config

from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.driver import Analyzer
from ophyd_servomex.sim import Direction, WireKind, serve_pty

pytestmark = pytest.mark.anyio

SWEEP = [
    bytes.fromhex("1E 04 00 00 00 46 73 97"),
    bytes.fromhex("1E 02 00 00 00 50 7A 59"),
    bytes.fromhex("1E 02 03 E8 00 10 FB D9"),
]
CALLS = 700


async def test_cancelled_callers_never_break_or_interleave_a_transaction() -> None:
    rng = random.Random(4100)
    mode = ProtocolKind.MODBUS_RTU
    async with (
        serve_pty(quiet_config(mode)) as sim,
        Analyzer(
            sim.port, protocol=mode, address=ADDRESS, identify=False, inter_frame_idle=0.0005
        ) as analyser,
    ):
        completed = cancelled = 0
        for i in range(CALLS):
            deadline = rng.uniform(0.0, 0.004)
            try:
                if i % 2:
                    with anyio.fail_after(deadline):
                        await analyser.poll()
                else:
                    await asyncio.wait_for(analyser.poll(), deadline)
                completed += 1
            except TimeoutError:
                cancelled += 1
        assert cancelled >= 500
        assert completed + cancelled == CALLS
        # the port is still in step: a full poll decodes exactly
        assert (await analyser.poll()).values == bench_values(mode)
        assert analyser.modbus is not None
        assert analyser.modbus.line.failures == {}
        owner = analyser.modbus.line.owner
        # many callers left while their sweep was on the wire (abandoned, not skipped)
        assert owner.jobs_abandoned - owner.jobs_skipped >= 100
        events = sim.log.events()

    # nothing malformed reached the analyser
    assert [e for e in events if e.kind is WireKind.DISCARDED] == []
    received = [e for e in events if e.direction is Direction.RX]
    assert all(e.kind is WireKind.REQUEST and e.note == "" for e in received)
    # request, reply, request, reply…: never two requests in flight
    kinds = [e.kind for e in events]
    assert kinds == [WireKind.REQUEST, WireKind.REPLY] * (len(events) // 2)
    # and only whole sweeps, in order: a cancelled caller never cut one short
    sent = [e.data for e in received]
    assert len(sent) % 3 == 0
    assert sent == SWEEP * (len(sent) // 3)
