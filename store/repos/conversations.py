"""Dialog state: one conversation row per citizen address, and the ones whose window closed."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.db import dialect_name
from store.models import Conversation


async def conversation_of(session: AsyncSession, sender: str, *,
                          lock: bool = False) -> Conversation | None:
    """The dialog state of `sender`, if they ever wrote (`lock`: FOR UPDATE on PostgreSQL)."""
    stmt = select(Conversation).where(Conversation.sender == sender)
    if lock and dialect_name(session) == "postgresql":
        # Another gateway process may be handling this citizen's previous message: wait
        # for it, then read the draft it left (SQLite has one writer anyway).
        stmt = stmt.with_for_update()
    return (await session.exec(stmt)).first()


async def expired(session: AsyncSession, now: datetime, limit: int = 100) -> list[Conversation]:
    """Conversations holding a draft whose window closed before `now`."""
    stmt = (select(Conversation)
            .where(col(Conversation.expires_at) < now, col(Conversation.report_id).is_not(None))
            .order_by(col(Conversation.expires_at)).limit(limit))
    return list((await session.exec(stmt)).all())
