"""Inbound events: durable insert-or-ignore, claiming work with a lease, finishing, failing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.db import dialect_name, insert_for
from store.models import (
    EVENT_DONE,
    EVENT_PARKED,
    EVENT_PENDING,
    EVENT_PROCESSING,
    InboundEvent,
    table_of,
    utcnow,
)


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[int | None]:
    """One multi-row INSERT … ON CONFLICT DO NOTHING RETURNING; ids per row, None = duplicate.

    The caller commits: all messages of one webhook request go in one transaction (the group
    commit puts several requests in one). A key repeated inside the batch counts once: its
    later copies are duplicates.
    """
    now = utcnow()
    table = table_of(InboundEvent)
    first: dict[tuple[str, str], int] = {}
    values: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        key = (row["channel"], row["external_id"])
        if key in first:
            continue
        first[key] = index
        values.append({"accepted_at": now, "next_attempt_at": now, "status": EVENT_PENDING,
                       "attempts": 0, "claimed_by": None, "last_error": None,
                       "processed_at": None, "report_id": None, **row})
    # executemany with RETURNING: SQLAlchemy's "insertmanyvalues" sends multi-row INSERTs from
    # one cached statement (no per-batch compilation). Rows come back keyed, not ordered.
    stmt = (
        insert_for(session, table)
        .on_conflict_do_nothing(index_elements=["channel", "external_id"])
        .returning(table.c.id, table.c.channel, table.c.external_id)
    )
    result = await session.exec(stmt, params=values)
    new = {(channel, ext): id_ for id_, channel, ext in result.all()}
    return [
        new.get((row["channel"], row["external_id"]))
        if first[(row["channel"], row["external_id"])] == index else None
        for index, row in enumerate(rows)
    ]


async def claim_events(
    session: AsyncSession, worker: str, limit: int, lease: timedelta
) -> list[InboundEvent]:
    """Claim up to `limit` due events for `worker`, leasing them for `lease`.

    An event whose lease expired (its worker died mid-way) is claimable again, which is how
    a restart picks up what a killed process had not finished.
    """
    now = utcnow()
    table = table_of(InboundEvent)
    due = sa.and_(table.c.status.in_([EVENT_PENDING, EVENT_PROCESSING]),
                  table.c.next_attempt_at <= now)
    # One citizen's messages in order across workers: an event waits while another worker
    # holds a live lease on an earlier event of the same sender. One claim takes a sender's
    # due events together, in order.
    earlier = table_of(InboundEvent).alias("earlier")
    blocked = sa.exists().where(
        earlier.c.sender == table.c.sender, earlier.c.id < table.c.id,
        earlier.c.status == EVENT_PROCESSING, earlier.c.next_attempt_at > now,
    )
    values = {"status": EVENT_PROCESSING, "claimed_by": worker,
              "attempts": table.c.attempts + 1, "next_attempt_at": now + lease}
    pick = sa.select(table.c.id, table.c.sender).where(due, ~blocked).order_by(table.c.id)
    stmt: Any
    if dialect_name(session) != "postgresql":
        # SQLite has one writer: one UPDATE … WHERE id IN (SELECT …) claims atomically, and
        # there is no second worker process to race with (do not split processes on SQLite).
        stmt = (sa.update(table)
                .where(table.c.id.in_(pick.with_only_columns(table.c.id).limit(limit)
                                      .scalar_subquery()))
                .values(**values).returning(table.c.id))
    else:
        stmt = await _claim_in_order(session, pick.limit(limit), values, now)
    if stmt is None:
        await session.commit()
        return []
    ids = [r[0] for r in (await session.exec(stmt)).all()]
    await session.commit()
    if not ids:
        return []
    result = await session.exec(select(InboundEvent).where(col(InboundEvent.id).in_(ids)))
    return sorted(result.all(), key=lambda e: e.id or 0)


async def _claim_in_order(session: AsyncSession, pick: Any, values: dict[str, Any],
                          now: datetime) -> Any | None:
    """PostgreSQL: lock the candidates (SKIP LOCKED), then keep only events no other worker
    is claiming an earlier message of the same citizen for; the UPDATE that claims them."""
    table = table_of(InboundEvent)
    conn = await session.connection()
    candidates = [(int(r[0]), str(r[1]))
                  for r in (await conn.execute(pick.with_for_update(skip_locked=True))).all()]
    if not candidates:
        return None
    # A sender's earlier message that is due but not among ours was locked and skipped: another
    # worker is claiming it right now. Leave this sender's later ones for after it.
    mine = sorted({i for i, _ in candidates})
    first_other = sa.select(table.c.sender, sa.func.min(table.c.id)).where(
        table.c.sender.in_(sorted({snd for _, snd in candidates})),
        table.c.id.not_in(mine),
        table.c.status.in_([EVENT_PENDING, EVENT_PROCESSING]),
        table.c.next_attempt_at <= now,
    ).group_by(table.c.sender)
    held = {str(r[0]): int(r[1]) for r in (await conn.execute(first_other)).all()}
    keep = [i for i, snd in candidates if snd not in held or i < held[snd]]
    if not keep:
        return None
    return sa.update(table).where(table.c.id.in_(keep)).values(**values).returning(table.c.id)


async def finish_event(
    session: AsyncSession, event_id: int, status: str = EVENT_DONE, report_id: int | None = None
) -> None:
    """Mark an event processed (done or ignored)."""
    await session.exec(
        sa.update(table_of(InboundEvent))
        .where(table_of(InboundEvent).c.id == event_id)
        .values(status=status, processed_at=utcnow(), report_id=report_id, last_error=None)
    )


def _mine(t: sa.Table, worker: str | None) -> sa.ColumnElement[bool]:
    """Only rows this worker still holds (its claim, still processing); any row if None."""
    if worker is None:
        return sa.true()
    return sa.and_(t.c.claimed_by == worker, t.c.status == EVENT_PROCESSING)


async def extend_lease(session: AsyncSession, ids: Sequence[int], worker: str,
                       lease: timedelta) -> int:
    """Push the lease of `worker`'s claimed events forward (slow media); rows extended."""
    if not ids:
        return 0
    t = table_of(InboundEvent)
    result = await session.exec(
        sa.update(t).where(t.c.id.in_(list(ids)), _mine(t, worker))
        .values(next_attempt_at=utcnow() + lease))
    await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


async def finish_events(
    session: AsyncSession, done: Sequence[tuple[int, str, int | None]],
    worker: str | None = None,
) -> None:
    """Mark several events processed in one statement: (event id, status, report id) each.

    With `worker`, only events it still holds are marked (a re-claimed one is not).
    """
    if not done:
        return
    t = table_of(InboundEvent)
    stmt = (
        sa.update(t)
        .where(t.c.id == sa.bindparam("event_id"), _mine(t, worker))
        .values(status=sa.bindparam("new_status"), report_id=sa.bindparam("new_report"),
                processed_at=utcnow(), last_error=None)
    )
    conn = await session.connection()  # executemany: one statement for the whole batch
    await conn.execute(stmt, [{"event_id": i, "new_status": st, "new_report": r}
                              for i, st, r in done])


async def fail_event(
    session: AsyncSession, event_id: int, error: str, attempts: int, max_attempts: int,
    worker: str | None = None,
) -> str:
    """Record a failure: retry later with back-off, or park it after `max_attempts`.

    With `worker`, only while it still holds the event: an event another worker finished (or
    re-claimed) is left alone and "not_mine" is returned.
    """
    status = EVENT_PARKED if attempts >= max_attempts else EVENT_PENDING
    delay = min(300.0, 2.0 ** attempts)
    t = table_of(InboundEvent)
    result = await session.exec(
        sa.update(t)
        .where(t.c.id == event_id, _mine(t, worker))
        .values(
            status=status,
            last_error=error[:4000],
            next_attempt_at=utcnow() + timedelta(seconds=delay),
        )
    )
    await session.commit()
    if worker is not None and not getattr(result, "rowcount", 1):
        return "not_mine"
    return status


async def queue_depth(session: AsyncSession) -> int:
    """Events accepted but not processed yet."""
    t = table_of(InboundEvent)
    stmt = (select(sa.func.count()).select_from(t)
            .where(t.c.status.in_([EVENT_PENDING, EVENT_PROCESSING])))
    return int((await session.exec(stmt)).one())


async def referenced_names(session: AsyncSession, names: Sequence[str]) -> set[str]:
    """Which of these stored file names some inbound message mentions (web chat uploads)."""
    t = table_of(InboundEvent)
    found: set[str] = set()
    text = sa.cast(t.c.message, sa.Text)
    for start in range(0, len(names), 50):
        chunk = [n for n in names[start:start + 50] if n.replace(".", "").isalnum()]
        if not chunk:
            continue
        stmt = sa.select(text).where(sa.or_(*(text.contains(n, autoescape=True)
                                              for n in chunk)))
        for (body,) in (await session.exec(stmt)).all():  # type: ignore[call-overload]
            found.update(n for n in chunk if n in (body or ""))
    return found
