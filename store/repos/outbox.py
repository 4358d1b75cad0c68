"""The outbox: claiming due deliveries with a lease, and rows held for a closed reply window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.db import dialect_name
from store.models import (
    Outbox,
    table_of,
    utcnow,
)


async def claim_outbox(
    session: AsyncSession, kinds: Sequence[str], limit: int, lease: timedelta
) -> list[Any]:
    """Claim due outbox rows of `kinds` (a lease: a crashed sender's rows come back)."""
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


async def held_for(session: AsyncSession, urn: str) -> list[Outbox]:
    """Messages to `urn` held because its channel's reply window had closed."""
    stmt = select(Outbox).where(Outbox.recipient == urn, Outbox.status == "held")
    return list((await session.exec(stmt)).all())
