"""Reads of the operator console: the queue, the report page, duplicate candidates, deliveries.

Status names and limits come in as arguments, so the store knows nothing of the console.
Reports by id or code, and a report's classifications, are `store.repos.reports`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import (
    InboundEvent,
    OperatorAction,
    Outbox,
    Report,
    ReportHistory,
    ReportStatus,
)


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows: a status ("all": every non-draft one), channel, sector, urgency."""

    status: str = ReportStatus.SUBMITTED
    channel: str = ""
    sector: str = ""
    urgent_only: bool = False


class ReminderRow(NamedTuple):
    """A reminder written by the scheduler and the report it is about."""

    action: OperatorAction
    report: Report


async def queue(
    session: AsyncSession, f: QueueFilter, limit: int
) -> tuple[list[Report], int]:
    """Non-draft reports matching `f`, longest waiting first, and how many match in all."""
    since = func.coalesce(Report.submitted_at, Report.created_at)
    conds: list[Any] = [col(Report.status) != ReportStatus.DRAFT]
    if f.status != "all":
        conds.append(Report.status == f.status)
    if f.channel:
        conds.append(Report.channel == f.channel)
    if f.sector:
        conds.append(Report.sector == f.sector)
    if f.urgent_only:
        conds.append(col(Report.urgent).is_(True))
    total = (await session.exec(select(func.count()).select_from(Report).where(*conds))).one()
    reports = (await session.exec(
        select(Report).where(*conds).order_by(since, col(Report.id)).limit(limit)
    )).all()
    return list(reports), int(total)


async def report_events(session: AsyncSession, report_id: int) -> list[InboundEvent]:
    """The inbound messages that make up a report, in the order they were received."""
    stmt = (select(InboundEvent).where(InboundEvent.report_id == report_id)
            .order_by(col(InboundEvent.received_at), col(InboundEvent.id)))
    return list((await session.exec(stmt)).all())


async def report_history(session: AsyncSession, report_id: int) -> list[ReportHistory]:
    """The status history of a report, oldest first."""
    stmt = (select(ReportHistory).where(ReportHistory.report_id == report_id)
            .order_by(col(ReportHistory.at), col(ReportHistory.id)))
    return list((await session.exec(stmt)).all())


async def duplicate_candidates(
    session: AsyncSession, *, exclude_id: int | None, statuses: Sequence[str],
    since: datetime, until: datetime, limit: int,
) -> list[Report]:
    """Reports created in [since, until] in `statuses` that are no duplicate themselves,
    newest first (the caller scores them)."""
    stmt = select(Report).where(
        col(Report.id) != exclude_id,
        col(Report.status).in_(list(statuses)),
        col(Report.duplicate_of).is_(None),
        col(Report.created_at) >= since,
        col(Report.created_at) <= until,
    ).order_by(col(Report.created_at).desc()).limit(limit)
    return list((await session.exec(stmt)).all())


async def recent_reminders(session: AsyncSession, limit: int) -> list[ReminderRow]:
    """The latest reminders with their reports, newest first."""
    stmt = (select(OperatorAction, Report)
            .join(Report, col(Report.id) == col(OperatorAction.report_id))
            .where(OperatorAction.action == "reminder")
            .order_by(col(OperatorAction.id).desc()).limit(limit))
    return [ReminderRow(a, r) for a, r in (await session.exec(stmt)).all()]


async def replies_to(
    session: AsyncSession, recipient: str, after: int, kinds: Sequence[str], limit: int
) -> list[Outbox]:
    """Outbox rows of `kinds` addressed to `recipient` with an id above `after`, in order."""
    stmt = (select(Outbox)
            .where(Outbox.recipient == recipient, col(Outbox.id) > after,
                   col(Outbox.kind).in_(list(kinds)))
            .order_by(col(Outbox.id)).limit(limit))
    return list((await session.exec(stmt)).all())
