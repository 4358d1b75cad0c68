"""Reads of the reporting jobs: dashboard figures, the weekly summary and the reminders.

Periods, SLA limits and statuses come in as arguments; the store knows no settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import OperatorAction, Report, ReportHistory, ReportStatus

REVIEW_ACTIONS = ("confirm", "change_sector", "merge", "reject")


class ReceivedGroup(NamedTuple):
    """How many reports of one channel, sector and agency were received."""

    channel: str
    sector: str | None
    agency: str | None
    reports: int


# Dashboard ---------------------------------------------------------------------------------

async def submitted_since(session: AsyncSession, start: datetime) -> list[Report]:
    """Reports submitted at or after `start`, in submission order."""
    stmt = (select(Report).where(col(Report.submitted_at) >= start)
            .order_by(col(Report.submitted_at)))
    return list((await session.exec(stmt)).all())


async def auto_confirmed(session: AsyncSession, report_ids: Sequence[int]) -> set[int]:
    """Those of `report_ids` the classifier confirmed without an operator."""
    if not report_ids:
        return set()
    stmt = select(ReportHistory.report_id).where(
        col(ReportHistory.report_id).in_(list(report_ids)),
        ReportHistory.status == ReportStatus.CONFIRMED, ReportHistory.source == "classifier")
    return set((await session.exec(stmt)).all())


async def review_actions(
    session: AsyncSession, report_ids: Sequence[int], actions: Sequence[str] = REVIEW_ACTIONS
) -> list[OperatorAction]:
    """Operators' verdicts (confirm, change sector, merge, reject) on these reports, in order."""
    if not report_ids:
        return []
    stmt = (select(OperatorAction).where(
        col(OperatorAction.report_id).in_(list(report_ids)),
        col(OperatorAction.action).in_(list(actions)))
        .order_by(col(OperatorAction.at), col(OperatorAction.id)))
    return list((await session.exec(stmt)).all())


# Weekly summary ----------------------------------------------------------------------------

async def received_counts(
    session: AsyncSession, start: datetime, end: datetime
) -> list[ReceivedGroup]:
    """Non-draft reports submitted in [start, end), counted per channel, sector and agency."""
    stmt = (select(Report.channel, Report.sector, Report.agency, func.count())
            .where(col(Report.submitted_at) >= start, col(Report.submitted_at) < end,
                   Report.status != ReportStatus.DRAFT)
            .group_by(col(Report.channel), col(Report.sector), col(Report.agency)))
    return [ReceivedGroup(ch, sector, agency, int(n))
            for ch, sector, agency, n in (await session.exec(stmt)).all()]


async def resolved_between(session: AsyncSession, start: datetime, end: datetime) -> list[Report]:
    """Reports closed (resolved or rejected: `resolved_at` set) in [start, end)."""
    stmt = select(Report).where(col(Report.resolved_at) >= start, col(Report.resolved_at) < end)
    return list((await session.exec(stmt)).all())


async def first_forwarded(session: AsyncSession, report_ids: Sequence[int]) -> dict[int, datetime]:
    """When each report first reached the central system (its first 'forwarded' history row);
    reports never forwarded are left out."""
    if not report_ids:
        return {}
    stmt = (select(ReportHistory.report_id, func.min(ReportHistory.at))
            .where(col(ReportHistory.report_id).in_(list(report_ids)),
                   ReportHistory.status == ReportStatus.FORWARDED)
            .group_by(col(ReportHistory.report_id)))
    return {rid: at for rid, at in (await session.exec(stmt)).all() if at is not None}


# Reminders ---------------------------------------------------------------------------------

async def unconfirmed_before(session: AsyncSession, before: datetime, limit: int) -> list[Report]:
    """Submitted reports waiting since `before` or earlier, longest waiting first."""
    stmt = (select(Report).where(Report.status == ReportStatus.SUBMITTED,
                                 col(Report.submitted_at) <= before)
            .order_by(col(Report.submitted_at)).limit(limit))
    return list((await session.exec(stmt)).all())


async def at_agency(session: AsyncSession, limit: int) -> list[Report]:
    """Reports the agencies hold (forwarded or in progress), by confirmation time."""
    held = [ReportStatus.FORWARDED, ReportStatus.IN_PROGRESS]
    stmt = (select(Report).where(col(Report.status).in_(held))
            .order_by(col(Report.confirmed_at)).limit(limit))
    return list((await session.exec(stmt)).all())


async def reminded(session: AsyncSession, report_ids: Sequence[int], audience: str) -> set[int]:
    """Those of `report_ids` that already have a reminder for `audience`."""
    if not report_ids:
        return set()
    stmt = select(OperatorAction).where(col(OperatorAction.report_id).in_(list(report_ids)),
                                        OperatorAction.action == "reminder")
    # The audience lives in the JSON `after`; JSON operators differ between SQLite and
    # PostgreSQL, and a report has at most a couple of reminders, so it is filtered here.
    return {a.report_id for a in (await session.exec(stmt)).all()
            if a.report_id is not None and a.after.get("audience") == audience}
