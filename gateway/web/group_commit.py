"""Group commit: concurrent webhook requests share one transaction, and each still waits for it.

One commit per request costs one fsync (SQLite synchronous=FULL, PostgreSQL WAL flush), which
caps ingest at a few hundred requests per second. Here the first request starts a flush; every
request that arrives while that commit is in flight queues for the next one, so a batch grows
exactly as large as the load makes it and a lone request never waits for company. A request's
`insert` returns only after the transaction holding its rows has committed, so an ack still
means "durable". If a batch fails, its requests are retried one by one, so one bad row costs
only its own request a 503, never its neighbours'.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from store.repos import events as events_repo
from store.write_gate import WriteGate, maybe

log = logging.getLogger("paht.ingest")

MAX_BATCH_ROWS = 400  # × 9 columns stays far below SQLite's bound-parameter limit


@dataclass(slots=True)
class _Job:
    rows: Sequence[dict[str, Any]]
    future: asyncio.Future[list[int | None]] = field(repr=False)


class GroupCommitter:
    """Queues inserts from concurrent requests and commits them in shared transactions."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 max_rows: int = MAX_BATCH_ROWS, gate: WriteGate | None = None) -> None:
        self.sessions = sessions
        self.gate = gate
        self.max_rows = max_rows
        self._queue: list[_Job] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # committed transactions, for tests and the bench
        self.largest = 0  # most requests in one transaction

    async def insert(self, rows: Sequence[dict[str, Any]]) -> list[int | None]:
        """Insert `rows` (one request's messages); returns once their batch has committed."""
        job = _Job(rows, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush(), name="group-commit")
        return await job.future

    def _take(self) -> list[_Job]:
        batch: list[_Job] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].rows) <= self.max_rows):
            job = self._queue.pop(0)
            batch.append(job)
            size += len(job.rows)
        return batch

    async def _commit(self, rows: Sequence[dict[str, Any]]) -> list[int | None]:
        async with maybe(self.gate, urgent=True), self.sessions() as session:
            ids = await events_repo.insert_events(session, rows)
            await session.commit()
        return ids

    async def _flush(self) -> None:
        batch: list[_Job] = []
        try:
            while self._queue:
                batch = self._take()
                try:
                    ids = await self._commit([row for job in batch for row in job.rows])
                except Exception as exc:
                    if len(batch) == 1:
                        _fail(batch[0], exc)
                    else:
                        log.warning("batch commit failed; retrying its requests one by one",
                                    extra={"requests": len(batch), "why": str(exc)[:200]})
                        await self._one_by_one(batch)
                    batch = []
                    continue
                self.batches += 1
                self.largest = max(self.largest, len(batch))
                offset = 0
                for job in batch:
                    if not job.future.done():
                        job.future.set_result(ids[offset:offset + len(job.rows)])
                    offset += len(job.rows)
                batch = []
        finally:
            # Cancelled (shutdown) or crashed: nobody may wait forever, nobody gets a false ack.
            for job in batch + self._queue:
                _fail(job, RuntimeError("ingest stopped before commit"))
            if batch or self._queue:
                self._queue.clear()

    async def _one_by_one(self, batch: list[_Job]) -> None:
        for job in batch:
            try:
                ids = await self._commit(job.rows)
            except Exception as exc:
                _fail(job, exc)
            else:
                self.batches += 1
                if not job.future.done():
                    job.future.set_result(ids)


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)
