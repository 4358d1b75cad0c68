"""The SQLite write gate: webhook commits overtake waiting background transactions."""

from __future__ import annotations

import asyncio

from store.write_gate import WriteGate, maybe


async def test_urgent_overtakes_waiting_background() -> None:
    gate = WriteGate()
    order: list[str] = []
    release = asyncio.Event()

    async def background(name: str, hold: asyncio.Event | None = None) -> None:
        async with gate.background():
            order.append(name)
            if hold is not None:
                await hold.wait()

    async def urgent(name: str) -> None:
        async with gate.urgent():
            order.append(name)

    first = asyncio.create_task(background("bg1", release))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(background("bg2")), asyncio.create_task(background("bg3"))]
    await asyncio.sleep(0)
    hurry = asyncio.create_task(urgent("webhook"))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, hurry, *waiting)
    assert order[0] == "bg1" and order[1] == "webhook"
    assert sorted(order[2:]) == ["bg2", "bg3"]


async def test_cancelled_urgent_waiter_does_not_block_background() -> None:
    gate = WriteGate()
    hold = asyncio.Event()

    async def holder() -> None:
        async with gate.background():
            await hold.wait()

    task = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(gate.urgent().__aenter__())
    await asyncio.sleep(0)
    waiter.cancel()
    hold.set()
    await task
    async with gate.background():  # would hang if the cancelled waiter still counted
        pass


async def test_no_gate_is_a_no_op() -> None:
    async with maybe(None, urgent=True):
        pass
