"""Pushes of duty alerts and reminders to outside targets (Telegram group, e-mail).

One `AlertPush` row per (item, target), unique on its key, so an item is sent once per target
whatever the number of scheduler runs; a failed push is retried until `max_attempts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import AlertPush, DutyAlert, OperatorAction, Report, utcnow


async def recent_alerts(session: AsyncSession, since: datetime, limit: int = 100
                        ) -> list[tuple[DutyAlert, Report]]:
    """Duty alerts created since `since` with their reports, oldest first."""
    stmt = (select(DutyAlert, Report).join(Report, col(Report.id) == col(DutyAlert.report_id))
            .where(col(DutyAlert.created_at) >= since)
            .order_by(col(DutyAlert.id)).limit(limit))
    return [(a, r) for a, r in (await session.exec(stmt)).all()]


async def recent_reminders(session: AsyncSession, since: datetime, limit: int = 200
                           ) -> list[tuple[OperatorAction, Report]]:
    """Reminder rows written since `since` with their reports, oldest first."""
    stmt = (select(OperatorAction, Report)
            .join(Report, col(Report.id) == col(OperatorAction.report_id))
            .where(OperatorAction.action == "reminder", col(OperatorAction.at) >= since)
            .order_by(col(OperatorAction.id)).limit(limit))
    return [(a, r) for a, r in (await session.exec(stmt)).all()]


async def by_keys(session: AsyncSession, keys: Sequence[str]) -> dict[str, AlertPush]:
    """The push rows that exist for these keys."""
    if not keys:
        return {}
    stmt = select(AlertPush).where(col(AlertPush.key).in_(list(keys)))
    return {p.key: p for p in (await session.exec(stmt)).all()}


def record(session: AsyncSession, push: AlertPush | None, key: str, target: str, ok: bool,
           error: str | None, max_attempts: int) -> AlertPush:
    """Write the outcome of one attempt (the caller commits)."""
    push = push or AlertPush(key=key, target=target)
    push.attempts += 1
    if ok:
        push.status, push.sent_at, push.last_error = "sent", utcnow(), None
    else:
        push.last_error = (error or "")[:2000]
        push.status = "dead" if push.attempts >= max_attempts else "pending"
    session.add(push)
    return push
