"""Reads and writes of reports: lookups, history, audit rows, identities to notify, the
filtered listings of the integration API and Open311, polling and central status events.

Statuses and channel names come in as arguments: the store knows no life cycle and no
channels.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.central_models import CentralStatusEvent
from store.db import insert_for
from store.models import (
    Classification,
    Identity,
    InboundEvent,
    OperatorAction,
    Outbox,
    Report,
    ReportHistory,
    ReportStatus,
    utcnow,
)


async def find_by_code(session: AsyncSession, code: str) -> Report | None:
    """The report with tracking code `code` (case-insensitive)."""
    stmt = select(Report).where(Report.code == code.strip().upper())
    return (await session.exec(stmt)).first()


async def by_ids(session: AsyncSession, ids: Collection[int]) -> dict[int, Report]:
    """Reports by id (the originals of merged duplicates, for instance)."""
    if not ids:
        return {}
    rows = await session.exec(select(Report).where(col(Report.id).in_(list(ids))))
    return {r.id: r for r in rows.all() if r.id is not None}


async def history_of(session: AsyncSession, report_id: int) -> list[ReportHistory]:
    """The history rows of a report, oldest first."""
    stmt = (select(ReportHistory).where(ReportHistory.report_id == report_id)
            .order_by(col(ReportHistory.id)))
    return list((await session.exec(stmt)).all())


async def notes_of(session: AsyncSession, report_ids: Sequence[int]) -> list[ReportHistory]:
    """The history rows with a note of several reports, oldest first."""
    if not report_ids:
        return []
    stmt = (select(ReportHistory)
            .where(col(ReportHistory.report_id).in_(list(report_ids)),
                   col(ReportHistory.note).is_not(None))
            .order_by(col(ReportHistory.id)))
    return list((await session.exec(stmt)).all())


async def actions_of(session: AsyncSession, report_id: int) -> list[OperatorAction]:
    """The audit rows of a report, oldest first."""
    stmt = (select(OperatorAction).where(OperatorAction.report_id == report_id)
            .order_by(col(OperatorAction.id)))
    return list((await session.exec(stmt)).all())


async def classifications_of(session: AsyncSession, report_id: int) -> list[Classification]:
    """What the classifier said about a report, oldest first."""
    stmt = (select(Classification).where(Classification.report_id == report_id)
            .order_by(col(Classification.id)))
    return list((await session.exec(stmt)).all())


async def events_of(session: AsyncSession, report_id: int) -> list[InboundEvent]:
    """The inbound messages that joined a report, oldest first."""
    stmt = (select(InboundEvent).where(InboundEvent.report_id == report_id)
            .order_by(col(InboundEvent.id)))
    return list((await session.exec(stmt)).all())


async def last_inbound_at(session: AsyncSession, urn: str) -> datetime | None:
    """When the citizen last wrote from `urn` (for providers' reply windows)."""
    ident = (await session.exec(select(Identity).where(Identity.urn == urn))).first()
    return ident.last_inbound_at if ident else None


async def latest_identity(
    session: AsyncSession, citizen_id: int, channels: Collection[str]
) -> Identity | None:
    """The identity on one of `channels` a citizen used most recently (never-used ones last)."""
    stmt = (
        select(Identity)
        .where(Identity.citizen_id == citizen_id, col(Identity.channel).in_(list(channels)))
        .order_by(sa.case((col(Identity.last_inbound_at).is_(None), 1), else_=0),
                  col(Identity.last_inbound_at).desc(), col(Identity.id).desc())
        .limit(1)
    )
    return (await session.exec(stmt)).first()


async def outbox_key_taken(session: AsyncSession, dedup_key: str) -> bool:
    """Whether an outbox row with `dedup_key` exists already."""
    stmt = select(Outbox.id).where(Outbox.dedup_key == dedup_key)
    return (await session.exec(stmt)).first() is not None


async def repoint_duplicates(session: AsyncSession, old: int, new: int) -> None:
    """Duplicates of `old` become duplicates of `new` (when `old` itself is merged)."""
    await session.exec(
        sa.update(Report).where(col(Report.duplicate_of) == old).values(duplicate_of=new))


async def rated_without_delivery(session: AsyncSession, limit: int) -> list[Report]:
    """Rated reports that have no `rating:<code>` outbox row yet."""
    has_row = sa.exists().where(col(Outbox.dedup_key) == sa.literal("rating:") + col(Report.code))
    stmt = select(Report).where(col(Report.rating).is_not(None), col(Report.code).is_not(None),
                                ~has_row).limit(limit)
    return list((await session.exec(stmt)).all())


async def due_for_poll(
    session: AsyncSession, statuses: Collection[str], limit: int
) -> list[tuple[str, str, str]]:
    """(code, central_ref, status) of forwarded reports to ask the centre about, stalest first."""
    stmt = (select(Report)
            .where(col(Report.central_ref).is_not(None), col(Report.status).in_(list(statuses)))
            .order_by(col(Report.updated_at)).limit(limit))
    return [(r.code or "", r.central_ref or "", r.status)
            for r in (await session.exec(stmt)).all()]


async def record_central_event(session: AsyncSession, event: dict[str, Any], source: str) -> bool:
    """Store a central status event unless its event_id was seen before; False for a replay."""
    stmt = (
        insert_for(session, CentralStatusEvent)
        .values(event_id=event["event_id"], code=event["code"].upper(), status=event["status"],
                note=event.get("note"), agency=event.get("agency"), source=source,
                received_at=utcnow())
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(col(CentralStatusEvent.id))
    )
    return (await session.exec(stmt)).first() is not None


async def list_reports(
    session: AsyncSession, *, statuses: Sequence[str] = (), sectors: Sequence[str] = (),
    channels: Sequence[str] = (), since: datetime | None = None, until: datetime | None = None,
    limit: int = 50, offset: int = 0,
) -> tuple[int, list[Report]]:
    """(total, one page newest first) of reports with a code, filtered (the integration API)."""
    stmt = select(Report).where(col(Report.code).is_not(None))
    for column, wanted in ((Report.status, statuses), (Report.sector, sectors),
                           (Report.channel, channels)):
        if wanted:
            stmt = stmt.where(col(column).in_(list(wanted)))
    if since is not None:
        stmt = stmt.where(col(Report.submitted_at) >= since)
    if until is not None:
        stmt = stmt.where(col(Report.submitted_at) <= until)
    total = (await session.exec(select(func.count()).select_from(stmt.subquery()))).one()
    rows = await session.exec(stmt.order_by(col(Report.id).desc()).offset(offset).limit(limit))
    return int(total), list(rows.all())


async def service_requests(
    session: AsyncSession, *, codes: Sequence[str] = (), start: datetime | None = None,
    end: datetime | None = None, sectors: Sequence[str] = (),
    effective_statuses: Collection[str] = (), limit: int = 1000,
) -> list[Report]:
    """Submitted reports for Open311, newest first; a merged one filters on its original's
    status (`effective_statuses`), since it is open or closed with it."""
    original = aliased(Report)
    stmt = (select(Report)
            .outerjoin(original, col(original.id) == col(Report.duplicate_of))
            .where(col(Report.code).is_not(None), Report.status != ReportStatus.DRAFT))
    if codes:
        stmt = stmt.where(col(Report.code).in_(list(codes)))
    if start is not None:
        stmt = stmt.where(col(Report.submitted_at) >= start)
    if end is not None:
        stmt = stmt.where(col(Report.submitted_at) <= end)
    if sectors:
        stmt = stmt.where(col(Report.sector).in_(list(sectors)))
    if effective_statuses:
        effective = sa.case((col(Report.status) == ReportStatus.MERGED, col(original.status)),
                            else_=col(Report.status))
        stmt = stmt.where(effective.in_(list(effective_statuses)))
    stmt = stmt.order_by(col(Report.submitted_at).desc()).limit(limit)
    return list((await session.exec(stmt)).all())


async def messages(
    session: AsyncSession, *, channel: str | None = None, external_id: str | None = None,
    limit: int = 50, offset: int = 0,
) -> list[tuple[InboundEvent, str | None]]:
    """Accepted inbound messages, newest first, each with the code of the report it joined."""
    stmt = select(InboundEvent, Report.code).join(
        Report, col(Report.id) == col(InboundEvent.report_id), isouter=True)
    if channel:
        stmt = stmt.where(InboundEvent.channel == channel)
    if external_id:
        stmt = stmt.where(InboundEvent.external_id == external_id)
    rows = await session.exec(
        stmt.order_by(col(InboundEvent.id).desc()).offset(offset).limit(limit))
    return [(e, code) for e, code in rows.all()]


async def queue_forward_link(session: AsyncSession, report: Report) -> bool:
    """Queue the delivery that tells the centre `report` duplicates its original
    (`link:<code>`); False when it is queued already. The caller commits."""
    if report.code is None:
        return False
    key = f"link:{report.code}"
    if await outbox_key_taken(session, key):
        return False
    session.add(Outbox(kind="forward", report_id=report.id,
                       payload={"code": report.code, "type": "link"}, dedup_key=key))
    return True


async def operator_judgements(
    session: AsyncSession, actions: Collection[str] = ("confirm", "change_sector"),
    limit: int | None = None,
) -> list[tuple[OperatorAction, Report]]:
    """Operators' confirmations and sector changes with their reports, oldest first (of the
    `limit` reports judged last): the labelled examples `paht keywords evaluate` replays and
    the second opinion learns."""
    judged = (col(OperatorAction.action).in_(list(actions)),
              col(OperatorAction.operator_id).is_not(None))
    stmt = (select(OperatorAction, Report)
            .join(Report, col(Report.id) == col(OperatorAction.report_id))
            .where(*judged).order_by(col(OperatorAction.id)))
    if limit is not None:
        newest = (select(col(OperatorAction.report_id)).where(*judged)
                  .group_by(col(OperatorAction.report_id))
                  .order_by(func.max(col(OperatorAction.id)).desc()).limit(limit))
        stmt = stmt.where(col(OperatorAction.report_id).in_(newest))
    return [(a, r) for a, r in (await session.exec(stmt)).all()]
