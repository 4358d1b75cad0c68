"""Duty alerts: emergencies the duty officer must see at once, and a citizen's recent reports.

An alert is written in the same transaction as the urgent report it points to, so a crash
never leaves an emergency without its alert (or an alert without its report).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import DutyAlert, InboundEvent, Report, ReportStatus, utcnow


def add_alert(session: AsyncSession, report_id: int, hazard: str, numbers: Sequence[str],
              channel: str) -> DutyAlert:
    """Record an alert for `report_id` in the caller's transaction (the caller commits)."""
    alert = DutyAlert(report_id=report_id, hazard=hazard, numbers=list(numbers),
                      channel=channel)
    session.add(alert)
    return alert


async def open_alerts(session: AsyncSession, limit: int = 50) -> list[DutyAlert]:
    """Alerts nobody acknowledged yet, newest first."""
    stmt = (select(DutyAlert).where(col(DutyAlert.acknowledged_at).is_(None))
            .order_by(col(DutyAlert.created_at).desc(), col(DutyAlert.id).desc()).limit(limit))
    return list((await session.exec(stmt)).all())


async def alerts_since(session: AsyncSession, after_id: int, limit: int = 50) -> list[DutyAlert]:
    """Alerts with an id above `after_id`, oldest first (for a console push/poll)."""
    stmt = (select(DutyAlert).where(col(DutyAlert.id) > after_id)
            .order_by(col(DutyAlert.id)).limit(limit))
    return list((await session.exec(stmt)).all())


async def alerts_of(session: AsyncSession, report_id: int) -> list[DutyAlert]:
    """The alerts raised for one report."""
    stmt = select(DutyAlert).where(DutyAlert.report_id == report_id).order_by(col(DutyAlert.id))
    return list((await session.exec(stmt)).all())


async def acknowledge(session: AsyncSession, alert_id: int, operator_id: int,
                      at: datetime | None = None) -> bool:
    """Mark an alert as seen by an operator; False when unknown or already acknowledged."""
    alert = await session.get(DutyAlert, alert_id)
    if alert is None or alert.acknowledged_at is not None:
        return False
    alert.acknowledged_at = at or utcnow()
    alert.acknowledged_by = operator_id
    session.add(alert)
    return True


async def recent_reports_of(session: AsyncSession, citizen_id: int,
                            limit: int = 3) -> list[Report]:
    """A citizen's latest submitted reports (drafts excluded), newest first."""
    stmt = (select(Report).where(Report.citizen_id == citizen_id,
                                 Report.status != ReportStatus.DRAFT,
                                 col(Report.code).is_not(None))
            .order_by(col(Report.id).desc()).limit(limit))
    return list((await session.exec(stmt)).all())


async def inbound_of(session: AsyncSession, sender: str, limit: int = 200) -> list[InboundEvent]:
    """What one address sent us, oldest first (the web chat's history after a reload)."""
    stmt = (select(InboundEvent).where(InboundEvent.sender == sender)
            .order_by(col(InboundEvent.id).desc()).limit(limit))
    return list(reversed((await session.exec(stmt)).all()))
