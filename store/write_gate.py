"""SQLite has one writer at a time: let webhook commits go before background transactions.

Without this, an acknowledgement waits for the worker's transaction inside SQLite's busy
handler, which sleeps in steps of up to 100 ms (p99 ack latency ~0.7 s under load with the
worker in the same process). With it, writers queue on an asyncio lock instead, and a webhook
commit waits at most for the one background transaction already holding the lock.
PostgreSQL has row-level locking and needs no gate (`Services.write_gate` is None there).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class WriteGate:
    """An asyncio lock where `urgent` holders (webhook commits) overtake `background` ones."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._urgent_waiting = 0
        self._no_urgent = asyncio.Event()
        self._no_urgent.set()

    @property
    def urgent_waiting(self) -> bool:
        """True while a webhook commit waits for the gate (a background holder should yield)."""
        return self._urgent_waiting > 0

    @asynccontextmanager
    async def urgent(self) -> AsyncIterator[None]:
        """Hold the gate for a webhook commit."""
        self._urgent_waiting += 1
        self._no_urgent.clear()
        try:
            await self._lock.acquire()
        finally:  # acquired or cancelled: either way no longer waiting
            self._urgent_waiting -= 1
            if not self._urgent_waiting:
                self._no_urgent.set()
        try:
            yield
        finally:
            self._lock.release()

    @asynccontextmanager
    async def background(self) -> AsyncIterator[None]:
        """Hold the gate for a worker transaction, after any waiting webhook commit."""
        while True:
            await self._no_urgent.wait()
            await self._lock.acquire()
            if not self._urgent_waiting:
                break
            self._lock.release()  # a webhook commit queued meanwhile: let it go first
        try:
            yield
        finally:
            self._lock.release()


@asynccontextmanager
async def maybe(gate: WriteGate | None, urgent: bool) -> AsyncIterator[None]:
    """`gate.urgent()`/`gate.background()`, or nothing when there is no gate (PostgreSQL)."""
    if gate is None:
        yield
        return
    async with gate.urgent() if urgent else gate.background():
        yield
