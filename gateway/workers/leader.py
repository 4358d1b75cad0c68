"""Scheduler leadership: one gateway process per PostgreSQL database runs the scheduled jobs.

Each process holds a dedicated connection (outside the pool) for its lifetime and tries
`pg_try_advisory_lock(key)` on it; the lock belongs to that session, so it is released when
the process exits or its connection dies, and another contender takes over on its next try.
The leader checks its connection every `interval`: a dead connection means the lock is gone
and the process steps down at once. On SQLite there is one process: it always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from store.db import async_url, is_sqlite

log = logging.getLogger("paht.leader")


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name`."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Leader:
    """Contends for leadership; calls `on_change(True/False)` when it gains or loses it."""

    def __init__(self, database_url: str, on_change: Callable[[bool], None] | None = None,
                 *, name: str = "paht-scheduler", interval: float = 10.0) -> None:
        self.url = database_url
        self.on_change = on_change or (lambda leading: None)
        self.key = lock_key(name)
        self.interval = interval
        self.leading = False
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("scheduler leadership " + ("gained" if leading else "lost"))
            try:
                self.on_change(leading)
            except Exception:  # e.g. pausing a scheduler already shut down at exit
                log.exception("leadership callback failed")

    async def try_acquire(self) -> bool:
        """One attempt (or one health check while leading); returns whether we lead."""
        if is_sqlite(self.url):
            self._set(True)
            return True
        try:
            if self._conn is None:
                if self._engine is None:
                    self._engine = create_async_engine(async_url(self.url), poolclass=NullPool)
                self._conn = await self._engine.connect()
                # autocommit: the lock is session-level, no transaction stays open for hours
                await self._conn.execution_options(isolation_level="AUTOCOMMIT")
            if self.leading:
                await self._conn.execute(sa.text("SELECT 1"))
                return True
            got = (await self._conn.execute(
                sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})).scalar()
            self._set(bool(got))
            if not got:
                log.debug("another process leads the scheduler")
        except Exception as exc:
            log.warning("leadership check failed", extra={"why": type(exc).__name__})
            await self._drop()
            self._set(False)
        return self.leading

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def run(self, stop: asyncio.Event) -> None:
        """Contend (and keep checking) until `stop` is set, then release."""
        try:
            while not stop.is_set():
                await self.try_acquire()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.interval)
        finally:
            await self.release()

    async def release(self) -> None:
        """Give up leadership and close the dedicated connection."""
        if self._conn is not None and self.leading:
            with contextlib.suppress(Exception):
                await self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"),
                                         {"k": self.key})
        await self._drop()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        self._set(False)
