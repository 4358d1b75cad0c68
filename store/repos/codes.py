"""Tracking codes from an atomic upsert counter per month (unique, never reused)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from store.db import insert_for
from store.models import (
    TrackingCounter,
    table_of,
)


async def next_tracking_code(session: AsyncSession, prefix: str, when: datetime) -> str:
    """Allocate the next code of the month, e.g. PA-2611-000123 (atomic, never reused)."""
    period = when.strftime("%y%m")
    table = table_of(TrackingCounter)
    stmt = (
        insert_for(session, table)
        .values(period=period, value=1)
        .on_conflict_do_update(index_elements=["period"], set_={"value": table.c.value + 1})
        .returning(table.c.value)
    )
    value = (await session.exec(stmt)).scalar_one()
    return f"{prefix}-{period}-{value:06d}"
