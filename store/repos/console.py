"""Reads of the operator console: the queue, the report page, duplicate candidates, deliveries.

Status names and limits come in as arguments, so the store knows nothing of the console.
Reports by id or code, and a report's classifications, are `store.repos.reports`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import (
    DutyAlert,
    InboundEvent,
    OperatorAction,
    Outbox,
    Report,
    ReportHistory,
    ReportStatus,
    table_of,
)


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows: a status ("all": every non-draft one), channel, sector, urgency."""

    status: str = ReportStatus.SUBMITTED
    channel: str = ""
    sector: str = ""
    urgent_only: bool = False
    assigned_to: int | None = None  # "của tôi"
    unassigned: bool = False  # "chưa ai nhận"


class ReminderRow(NamedTuple):
    """A reminder written by the scheduler and the report it is about."""

    action: OperatorAction
    report: Report


async def queue(
    session: AsyncSession, f: QueueFilter, limit: int
) -> tuple[list[Report], int]:
    """Non-draft reports matching `f`: urgent first, then longest waiting first, and how many
    match in all."""
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
    if f.assigned_to is not None:
        conds.append(Report.assigned_to == f.assigned_to)
    if f.unassigned:
        conds.append(col(Report.assigned_to).is_(None))
    total = (await session.exec(select(func.count()).select_from(Report).where(*conds))).one()
    reports = (await session.exec(
        select(Report).where(*conds)
        .order_by(col(Report.urgent).desc(), since, col(Report.id)).limit(limit)
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


@dataclass(frozen=True, slots=True)
class ScanRow:
    """The columns a duplicate is judged on (what `Report` has, without loading a Report)."""

    id: int
    sector: str | None
    lat: float | None
    lon: float | None
    address: str | None
    text: str
    transcript: str | None


async def duplicate_scan(
    session: AsyncSession, *, exclude_id: int | None, statuses: Sequence[str],
    since: datetime, until: datetime, limit: int,
) -> list[ScanRow]:
    """Like `duplicate_candidates`, but only the columns a duplicate is judged on (no ORM
    objects: each submission scans hundreds of reports)."""
    t = table_of(Report)
    stmt = (sa.select(t.c.id, t.c.sector, t.c.lat, t.c.lon, t.c.address, t.c.text,
                      t.c.transcript)
            .where(t.c.id != exclude_id, t.c.status.in_(list(statuses)),
                   t.c.duplicate_of.is_(None), t.c.created_at >= since,
                   t.c.created_at <= until)
            .order_by(t.c.created_at.desc()).limit(limit))
    conn = await session.connection()  # Core rows, no ORM objects
    rows = (await conn.execute(stmt)).all()
    return [ScanRow(r[0], r[1], r[2], r[3], r[4], r[5] or "", r[6]) for r in rows]


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


async def report_outbox(session: AsyncSession, report_id: int, kinds: Sequence[str]
                        ) -> list[Outbox]:
    """What the gateway sent (or will send) the citizen about a report, in order."""
    stmt = (select(Outbox).where(Outbox.report_id == report_id,
                                 col(Outbox.kind).in_(list(kinds)))
            .order_by(col(Outbox.created_at), col(Outbox.id)))
    return list((await session.exec(stmt)).all())


async def open_alerts(session: AsyncSession, limit: int = 20
                      ) -> list[tuple[DutyAlert, Report]]:
    """Unacknowledged duty alerts with their reports, newest first."""
    stmt = (select(DutyAlert, Report).join(Report, col(Report.id) == col(DutyAlert.report_id))
            .where(col(DutyAlert.acknowledged_at).is_(None))
            .order_by(col(DutyAlert.id).desc()).limit(limit))
    return [(a, r) for a, r in (await session.exec(stmt)).all()]


async def thread_marks(session: AsyncSession, report_id: int) -> tuple[int, int]:
    """The newest inbound event id and outbox id of a report (a thread changed when they do)."""
    last_in = (await session.exec(select(func.max(InboundEvent.id)).where(
        InboundEvent.report_id == report_id))).one()
    last_out = (await session.exec(select(func.max(Outbox.id)).where(
        Outbox.report_id == report_id))).one()
    return int(last_in or 0), int(last_out or 0)
