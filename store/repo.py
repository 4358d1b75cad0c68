"""Repository functions: the few statements whose correctness matters under concurrency.

Durable ingest (insert-or-ignore on (channel, external_id)), claiming work for the worker
(`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer at a time), tracking codes from
an atomic upsert counter, and identities that link one citizen across channels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    table_of,
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
            _insert(session, table_of(InboundEvent))
            .values(**values)
            .on_conflict_do_nothing(index_elements=["channel", "external_id"])
            .returning(table_of(InboundEvent).c.id)
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
    table = table_of(InboundEvent)
    due = sa.and_(table.c.status.in_([EVENT_PENDING, EVENT_PROCESSING]),
                  table.c.next_attempt_at <= now)
    # One citizen's messages in order across workers: an event waits while another worker
    # holds a live lease on an earlier event of the same sender. (One claim takes a sender's
    # events together, in order; the conversation row lock covers the claim-to-claim window.)
    earlier = table_of(InboundEvent).alias("earlier")
    blocked = sa.exists().where(
        earlier.c.sender == table.c.sender, earlier.c.id < table.c.id,
        earlier.c.status == EVENT_PROCESSING, earlier.c.next_attempt_at > now,
    )
    pick = sa.select(table.c.id).where(due, ~blocked).order_by(table.c.id).limit(limit)
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
        sa.update(table_of(InboundEvent))
        .where(table_of(InboundEvent).c.id == event_id)
        .values(status=status, processed_at=utcnow(), report_id=report_id, last_error=None)
    )


async def finish_events(
    session: AsyncSession, done: Sequence[tuple[int, str, int | None]]
) -> None:
    """Mark several events processed in one statement: (event id, status, report id) each."""
    if not done:
        return
    t = table_of(InboundEvent)
    stmt = (
        sa.update(t)
        .where(t.c.id == sa.bindparam("event_id"))
        .values(status=sa.bindparam("new_status"), report_id=sa.bindparam("new_report"),
                processed_at=utcnow(), last_error=None)
    )
    conn = await session.connection()  # executemany: one statement for the whole batch
    await conn.execute(stmt, [{"event_id": i, "new_status": st, "new_report": r}
                              for i, st, r in done])


async def fail_event(
    session: AsyncSession, event_id: int, error: str, attempts: int, max_attempts: int
) -> str:
    """Record a failure: retry later with back-off, or park it after `max_attempts`."""
    status = EVENT_PARKED if attempts >= max_attempts else EVENT_PENDING
    delay = min(300.0, 2.0 ** attempts)
    await session.exec(
        sa.update(table_of(InboundEvent))
        .where(table_of(InboundEvent).c.id == event_id)
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
    t = table_of(InboundEvent)
    stmt = (select(sa.func.count()).select_from(t)
            .where(t.c.status.in_([EVENT_PENDING, EVENT_PROCESSING])))
    return int((await session.exec(stmt)).one())


async def next_tracking_code(session: AsyncSession, prefix: str, when: datetime) -> str:
    """Allocate the next code of the month, e.g. PA-2611-000123 (atomic, never reused)."""
    period = when.strftime("%y%m")
    table = table_of(TrackingCounter)
    stmt = (
        _insert(session, table)
        .values(period=period, value=1)
        .on_conflict_do_update(index_elements=["period"], set_={"value": table.c.value + 1})
        .returning(table.c.value)
    )
    value = (await session.exec(stmt)).scalar_one()
    return f"{prefix}-{period}-{value:06d}"


class Known:
    """Identities, citizens and conversations of one worker batch, read in a few statements.

    The batch runs without autoflush: what one event creates is found here by the next event
    of the same sender instead of by a query that would first flush the whole session.
    """

    def __init__(self) -> None:
        self.identities: dict[str, Identity | None] = {}
        self.conversations: dict[str, Any] = {}  # sender -> Conversation | None

    async def load(self, session: AsyncSession, urns: Sequence[str], lock: bool) -> None:
        """Read the identities (and their citizens) and conversations of `urns`."""
        from store.models import Conversation

        wanted = sorted(set(urns) - set(self.identities))
        if not wanted:
            return
        stmt = (select(Conversation).where(col(Conversation.sender).in_(wanted))
                .order_by(col(Conversation.sender)))
        if lock and dialect_name(session) == "postgresql":
            # Another worker may be handling one of these citizens: wait for it (in a fixed
            # order, so two batches never deadlock), then read what it left.
            stmt = stmt.with_for_update()
        convs = {c.sender: c for c in (await session.exec(stmt)).all()}
        idents = (await session.exec(select(Identity).where(col(Identity.urn).in_(wanted)))).all()
        citizen_ids = sorted({i.citizen_id for i in idents})
        if citizen_ids:  # into the identity map, so session.get() needs no query
            await session.exec(select(Citizen).where(col(Citizen.id).in_(citizen_ids)))
        by_urn = {i.urn: i for i in idents}
        for urn in wanted:
            self.identities[urn] = by_urn.get(urn)
            self.conversations[urn] = convs.get(urn)


async def resolve_citizen(
    session: AsyncSession,
    urn: str,
    channel: str,
    *,
    display_name: str | None = None,
    phone: str | None = None,
    seen_at: datetime | None = None,
    known: Known | None = None,
) -> Citizen:
    """The citizen behind `urn`, created on first contact; a phone links identities."""
    if known is not None and urn in known.identities:
        identity = known.identities[urn]
    else:
        identity = (await session.exec(select(Identity).where(Identity.urn == urn))).first()
    citizen: Citizen | None = None
    if identity is not None:
        citizen = await session.get(Citizen, identity.citizen_id)
        if (citizen is not None and (not phone or phone == citizen.phone)
                and not (display_name and not citizen.display_name)):
            # The common case: a known citizen writes again. Nothing to link or fill in.
            if seen_at is not None:
                identity.last_inbound_at = seen_at
                session.add(identity)
            return citizen
    if phone:
        by_phone = (await session.exec(select(Citizen).where(Citizen.phone == phone))).first()
        if by_phone is not None and citizen is not None and by_phone.id != citizen.id:
            # The same person reached us on two channels: fold this identity into the
            # citizen who already owns the phone number.
            await session.flush()  # the UPDATEs below must see this batch's rows too
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
        if known is not None:
            known.identities[urn] = identity
    identity.citizen_id = citizen.id or 0
    if seen_at is not None:
        identity.last_inbound_at = seen_at
    session.add(identity)
    if known is None:
        await session.flush()
    return citizen


async def _move_identities(session: AsyncSession, src: int | None, dst: int | None) -> None:
    from store.models import Conversation, Report

    for model in (Identity, Report, Conversation):
        table = table_of(model)
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

    async def put(self, key: str, value: Mapping[str, Any], expected_version: int | None) -> bool:
        """Replace atomically; False when another process changed it first."""
        data = {k: v for k, v in value.items() if k != "_version"}
        async with self.sessions() as session:
            if expected_version is None:
                stmt = (
                    _insert(session, table_of(Credential))
                    .values(key=key, value=data, version=1, updated_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["key"])
                    .returning(table_of(Credential).c.key)
                )
                inserted = (await session.exec(stmt)).first() is not None
                await session.commit()
                return inserted
            table = table_of(Credential)
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
    table = table_of(Outbox)
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
