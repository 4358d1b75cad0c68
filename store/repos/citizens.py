"""Citizens and their channel identities (one person across channels; a phone links them)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.db import dialect_name
from store.models import (
    Citizen,
    Conversation,
    Identity,
    Report,
    table_of,
)


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
        # Only the new citizen's id is needed now; in a worker batch the rest of the
        # session is flushed at commit, table by table (one multi-row INSERT each).
        await session.flush([citizen] if known is not None else None)
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
    for model in (Identity, Report, Conversation):
        table = table_of(model)
        await session.exec(
            sa.update(table).where(table.c.citizen_id == src).values(citizen_id=dst)
        )


async def identities_of(session: AsyncSession, citizen_id: int) -> list[Identity]:
    """All channel addresses of a citizen."""
    stmt = select(Identity).where(Identity.citizen_id == citizen_id)
    return list((await session.exec(stmt)).all())


async def citizen_of(session: AsyncSession, urn: str) -> Citizen | None:
    """The citizen behind a channel address, if it ever wrote to us."""
    ident = (await session.exec(select(Identity).where(Identity.urn == urn))).first()
    return await session.get(Citizen, ident.citizen_id) if ident is not None else None
