"""PortOwner: jobs run inside one task, in order; a cancelled caller abandons only its reply."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

from ophyd_servomex.codec.errors import ServomexConnectionError, ServomexTimeoutError
from ophyd_servomex.driver import PortOwner

pytestmark = pytest.mark.anyio


async def test_jobs_run_in_the_owner_task_in_submission_order() -> None:
    order: list[int] = []
    tasks: set[object] = set()

    def make(i: int):  # type: ignore[no-untyped-def]
        async def job() -> int:
            tasks.add(asyncio.current_task())
            await anyio.lowlevel.checkpoint()
            order.append(i)
            return i * 10

        return job

    async with PortOwner(port="test") as owner:
        results: dict[int, int] = {}

        async def call(i: int) -> None:
            results[i] = await owner.run(make(i))

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(call, i)
                await anyio.lowlevel.checkpoint()
    assert order == list(range(20))
    assert results == {i: i * 10 for i in range(20)}
    assert len(tasks) == 1
    assert asyncio.current_task() not in tasks


async def test_a_cancelled_caller_does_not_cut_its_job_short() -> None:
    events: list[str] = []

    async def slow() -> str:
        events.append("start")
        await anyio.sleep(0.05)
        events.append("end")
        return "done"

    async def quick() -> str:
        events.append("next")
        return "ok"

    async with PortOwner() as owner:
        with anyio.move_on_after(0.01) as scope:
            await owner.run(slow)
        assert scope.cancelled_caught
        assert await owner.run(quick) == "ok"
        assert owner.jobs_abandoned == 1
    # the second job started only after the first finished: no interleaving
    assert events == ["start", "end", "next"]


async def test_asyncio_wait_for_cancellation_abandons_only_the_reply() -> None:
    events: list[str] = []

    async def slow() -> None:
        events.append("start")
        await anyio.sleep(0.03)
        events.append("end")

    async with PortOwner() as owner:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(owner.run(slow), 0.005)
        await owner.run(lambda: anyio.lowlevel.checkpoint())
    assert events == ["start", "end"]


async def test_a_job_abandoned_before_it_started_is_skipped() -> None:
    ran: list[str] = []

    async def blocker() -> None:
        await anyio.sleep(0.03)

    async def never() -> None:
        ran.append("never")

    async with PortOwner() as owner:
        async with anyio.create_task_group() as tg:
            tg.start_soon(owner.run, blocker)
            await anyio.lowlevel.checkpoint()
            with anyio.move_on_after(0.005):
                await owner.run(never)
        assert owner.jobs_skipped == 1
    assert ran == []


async def test_a_job_error_reaches_its_caller_and_the_owner_carries_on() -> None:
    async def fails() -> None:
        raise ServomexTimeoutError("no reply")

    async def works() -> int:
        return 7

    async with PortOwner() as owner:
        with pytest.raises(ServomexTimeoutError, match="no reply"):
            await owner.run(fails)
        assert await owner.run(works) == 7


async def test_run_after_close_raises_a_connection_error_naming_the_port() -> None:
    owner = PortOwner(port="/dev/ttyX")
    async with owner:
        pass
    with pytest.raises(ServomexConnectionError) as info:
        await owner.run(lambda: anyio.lowlevel.checkpoint())
    assert info.value.context.port == "/dev/ttyX"


async def test_callers_waiting_when_the_owner_closes_are_woken_with_an_error() -> None:
    caught: list[BaseException] = []

    async def forever() -> None:
        await anyio.sleep(10)

    async def caller(owner: PortOwner) -> None:
        try:
            await owner.run(forever)
        except ServomexConnectionError as exc:
            caught.append(exc)

    async with anyio.create_task_group() as tg, PortOwner(port="p") as owner:
        tg.start_soon(caller, owner)
        await anyio.sleep(0.01)
    assert len(caught) == 1
    assert "closed" in str(caught[0])
