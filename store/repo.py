"""Repository functions: the few statements whose correctness matters under concurrency.

Durable ingest (insert-or-ignore on (channel, external_id)), claiming work for the worker
(`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer at a time), tracking codes from
an atomic upsert counter, and identities that link one citizen across channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import (
    EVENT_DONE,
    EVENT_PARKED,
    EVENT_PENDING,
    EVENT_PROCESSING,
    Citizen,
    Credential,
    Identity,
    InboundEvent,
    TrackingCounter,
    utcnow,
)


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def dialect_name(session: AsyncSession) -> str:
    """'sqlite' or 'postgresql'."""
    return session.bind.dialect.name if session.bind else "sqlite"


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[int | None]:
    """Insert inbound events, ignoring ones already stored; return the new ids (None = dup).

    The caller commits: all messages of one webhook request go in one transaction.
    """
    ids: list[int | None] = []
    now = utcnow()
    for row in rows:
        values = {"accepted_at": now, "next_attempt_at": now, "status": EVENT_PENDING,
                  "attempts": 0, **row}
        stmt = (
            _insert(session, InboundEvent.__table__)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["channel", "external_id"])
            .returning(InboundEvent.__table__.c.id)
        )
        result = await session.exec(stmt)
        ids.append(result.scalar_one_or_none())
    return ids


async def claim_events(
    session: AsyncSession, worker: str, limit: int, lease: timedelta
) -> list[InboundEvent]:
    """Claim up to `limit` due events for `worker`, leasing them for `lease`.

    An event whose lease expired (its worker died mid-way) is claimable again, which is how
    a restart picks up what a killed process had not finished.
    """
    now = utcnow()
    table = InboundEvent.__table__
    due = sa.or_(
        sa.and_(table.c.status == EVENT_PENDING, table.c.next_attempt_at <= now),
        sa.and_(table.c.status == EVENT_PROCESSING, table.c.next_attempt_at <= now),
    )
    pick = sa.select(table.c.id).where(due).order_by(table.c.id).limit(limit)
    if dialect_name(session) == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        sa.update(table)
        .where(table.c.id.in_(pick.scalar_subquery()))
        .values(
            status=EVENT_PROCESSING,
            claimed_by=worker,
            attempts=table.c.attempts + 1,
            next_attempt_at=now + lease,
        )
        .returning(table.c.id)
    )
    ids = [r[0] for r in (await session.exec(stmt)).all()]
    await session.commit()
    if not ids:
        return []
    result = await session.exec(select(InboundEvent).where(col(InboundEvent.id).in_(ids)))
    return sorted(result.all(), key=lambda e: e.id or 0)


async def finish_event(
    session: AsyncSession, event_id: int, status: str = EVENT_DONE, report_id: int | None = None
) -> None:
    """Mark an event processed (done or ignored)."""
    await session.exec(
        sa.update(InboundEvent.__table__)
        .where(InboundEvent.__table__.c.id == event_id)
        .values(status=status, processed_at=utcnow(), report_id=report_id, last_error=None)
    )


async def fail_event(
    session: AsyncSession, event_id: int, error: str, attempts: int, max_attempts: int
) -> str:
    """Record a failure: retry later with back-off, or park it after `max_attempts`."""
    status = EVENT_PARKED if attempts >= max_attempts else EVENT_PENDING
    delay = min(300.0, 2.0 ** attempts)
    await session.exec(
        sa.update(InboundEvent.__table__)
        .where(InboundEvent.__table__.c.id == event_id)
        .values(
            status=status,
            last_error=error[:4000],
            next_attempt_at=utcnow() + timedelta(seconds=delay),
        )
    )
    await session.commit()
    return status


async def queue_depth(session: AsyncSession) -> int:
    """Events accepted but not processed yet."""
    t = InboundEvent.__table__
    stmt = sa.select(sa.func.count()).where(t.c.status.in_([EVENT_PENDING, EVENT_PROCESSING]))
    return int((await session.exec(stmt)).scalar_one())


async def next_tracking_code(session: AsyncSession, prefix: str, when: datetime) -> str:
    """Allocate the next code of the month, e.g. PA-2611-000123 (atomic, never reused)."""
    period = when.strftime("%y%m")
    table = TrackingCounter.__table__
    stmt = (
        _insert(session, table)
        .values(period=period, value=1)
        .on_conflict_do_update(index_elements=["period"], set_={"value": table.c.value + 1})
        .returning(table.c.value)
    )
    value = (await session.exec(stmt)).scalar_one()
    return f"{prefix}-{period}-{value:06d}"


async def resolve_citizen(
    session: AsyncSession,
    urn: str,
    channel: str,
    *,
    display_name: str | None = None,
    phone: str | None = None,
    seen_at: datetime | None = None,
) -> Citizen:
    """The citizen behind `urn`, created on first contact; a phone links identities."""
    identity = (await session.exec(select(Identity).where(Identity.urn == urn))).first()
    citizen: Citizen | None = None
    if identity is not None:
        citizen = await session.get(Citizen, identity.citizen_id)
    if phone:
        by_phone = (await session.exec(select(Citizen).where(Citizen.phone == phone))).first()
        if by_phone is not None and citizen is not None and by_phone.id != citizen.id:
            # The same person reached us on two channels: fold this identity into the
            # citizen who already owns the phone number.
            await _move_identities(session, citizen.id, by_phone.id)
            citizen = by_phone
        elif by_phone is not None:
            citizen = by_phone
    if citizen is None:
        citizen = Citizen(display_name=display_name, phone=phone)
        session.add(citizen)
        await session.flush()
    else:
        if phone and not citizen.phone:
            citizen.phone = phone
        if display_name and not citizen.display_name:
            citizen.display_name = display_name
        session.add(citizen)
    if identity is None:
        identity = Identity(urn=urn, channel=channel, citizen_id=citizen.id or 0)
    identity.citizen_id = citizen.id or 0
    if seen_at is not None:
        identity.last_inbound_at = seen_at
    session.add(identity)
    await session.flush()
    return citizen


async def _move_identities(session: AsyncSession, src: int | None, dst: int | None) -> None:
    from store.models import Conversation, Report

    for model in (Identity, Report, Conversation):
        table = model.__table__  # type: ignore[attr-defined]
        await session.exec(
            sa.update(table).where(table.c.citizen_id == src).values(citizen_id=dst)
        )


async def identities_of(session: AsyncSession, citizen_id: int) -> list[Identity]:
    """All channel addresses of a citizen."""
    stmt = select(Identity).where(Identity.citizen_id == citizen_id)
    return list((await session.exec(stmt)).all())


class DbTokenStore:
    """The channels' `TokenStore` on the `credential` table, with optimistic versioning."""

    def __init__(self, sessions: Any) -> None:
        self.sessions = sessions

    async def get(self, key: str) -> dict[str, Any] | None:
        """The stored value with its version under `_version`, or None."""
        async with self.sessions() as session:
            row = await session.get(Credential, key)
            if row is None:
                return None
            return {**row.value, "_version": row.version}

    async def put(self, key: str, value: dict[str, Any], expected_version: int | None) -> bool:
        """Replace atomically; False when another process changed it first."""
        data = {k: v for k, v in value.items() if k != "_version"}
        async with self.sessions() as session:
            if expected_version is None:
                stmt = (
                    _insert(session, Credential.__table__)
                    .values(key=key, value=data, version=1, updated_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["key"])
                    .returning(Credential.__table__.c.key)
                )
                inserted = (await session.exec(stmt)).first() is not None
                await session.commit()
                return inserted
            table = Credential.__table__
            result = await session.exec(
                sa.update(table)
                .where(table.c.key == key, table.c.version == expected_version)
                .values(value=data, version=expected_version + 1, updated_at=utcnow())
                .returning(table.c.key)
            )
            replaced = result.first() is not None
            await session.commit()
            return replaced


async def claim_outbox(
    session: AsyncSession, kinds: Sequence[str], limit: int, lease: timedelta
) -> list[Any]:
    """Claim due outbox rows of `kinds` (a lease: a crashed sender's rows come back)."""
    from store.models import Outbox

    now = utcnow()
    table = Outbox.__table__
    pick = (
        sa.select(table.c.id)
        .where(table.c.status == "pending", table.c.next_attempt_at <= now,
               table.c.kind.in_(list(kinds)))
        .order_by(table.c.id)
        .limit(limit)
    )
    if dialect_name(session) == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        sa.update(table)
        .where(table.c.id.in_(pick.scalar_subquery()))
        .values(attempts=table.c.attempts + 1, next_attempt_at=now + lease)
        .returning(table.c.id)
    )
    ids = [r[0] for r in (await session.exec(stmt)).all()]
    await session.commit()
    if not ids:
        return []
    rows = await session.exec(select(Outbox).where(col(Outbox.id).in_(ids)))
    return sorted(rows.all(), key=lambda r: r.id or 0)
