"""Report life cycle: submission (tracking code, classification, review policy), status
changes with history, and queuing messages to citizens through the outbox."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import Button, OutboundMessage
from channels.codec import outbound_to_dict
from gateway.services import Services
from store import repo
from store.models import Classification, Identity, Outbox, Report, ReportHistory, utcnow

log = logging.getLogger("paht.reports")


def report_text(report: Report) -> str:
    """What the citizen said: typed text and, for audio, the transcript."""
    parts = [p for p in (report.text, report.transcript) if p]
    return "\n".join(parts)


def classify_report(services: Services, report: Report) -> Classification | None:
    """Run the classifier on the report and copy its verdict onto the record."""
    clf = services.classifier
    if clf is None:
        report.needs_review = True  # no classifier: an operator decides, no made-up sector
        return None
    result = clf.classify(report_text(report))
    report.sector = result.sector
    report.score = round(float(result.score), 4)
    report.runner_up = result.runner_up
    report.matches = list(result.to_dict()["matches"])
    report.urgent = report.urgent or bool(result.urgent)
    report.needs_review = bool(result.needs_review)
    if result.address and not report.address:
        report.address = result.address
    try:
        report.agency = clf.route(result.sector, report_text(report)).agency
    except Exception:  # routing table incomplete: leave the agency to the operator
        log.warning("no agency route", extra={"sector": result.sector})
    return Classification(
        report_id=report.id or 0,
        sector=result.sector,
        score=report.score,
        runner_up=result.runner_up,
        runner_up_score=round(float(result.runner_up_score), 4),
        needs_review=report.needs_review,
        urgent=bool(result.urgent),
        matches=report.matches,
    )


def add_history(
    session: AsyncSession, report: Report, status: str, note: str | None = None,
    source: str = "gateway",
) -> None:
    """Append a history row (the status a citizen can look up)."""
    session.add(ReportHistory(report_id=report.id or 0, status=status, note=note, source=source))


async def submit(session: AsyncSession, services: Services, report: Report) -> Report:
    """Give a draft its tracking code, classify it and apply the review policy."""
    now = utcnow()
    if report.code is None:
        report.code = await repo.next_tracking_code(
            session, services.settings.tracking_prefix, now.astimezone(_tz(services))
        )
    report.status = "submitted"
    report.submitted_at = now
    report.updated_at = now
    classification = classify_report(services, report)
    session.add(report)
    await session.flush()
    if classification is not None:
        classification.report_id = report.id or 0
        session.add(classification)
    add_history(session, report, "submitted")
    policy = services.settings.review_policy
    auto = classification is not None and (
        policy == "none" or (policy == "low_confidence" and not report.needs_review)
    )
    if auto and "abusive" not in report.flags:
        await confirm(session, services, report, source="classifier")
    log.info(
        "report submitted",
        extra={"code": report.code, "sector": report.sector, "auto_confirmed": auto},
    )
    return report


async def confirm(
    session: AsyncSession, services: Services, report: Report, source: str = "operator"
) -> None:
    """Confirm a report and queue its forwarding in the same transaction (the outbox)."""
    report.status = "confirmed"
    report.confirmed_at = utcnow()
    report.updated_at = report.confirmed_at
    session.add(report)
    add_history(session, report, "confirmed", source=source)
    session.add(
        Outbox(
            kind="forward",
            report_id=report.id,
            payload={"code": report.code},
            dedup_key=f"forward:{report.code}",
        )
    )
    services.outbox_wake.set()


def _tz(services: Services) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(services.settings.timezone)


def local_time(services: Services, when: datetime | None) -> str:
    """A UTC time shown in the province's time zone (Asia/Ho_Chi_Minh)."""
    if when is None:
        return ""
    return when.astimezone(_tz(services)).strftime("%H:%M %d/%m/%Y")


async def last_inbound_at(session: AsyncSession, urn: str) -> datetime | None:
    """When the citizen last wrote from `urn` (for providers' reply windows)."""
    ident = (await session.exec(select(Identity).where(Identity.urn == urn))).first()
    return ident.last_inbound_at if ident else None


async def queue_message(
    session: AsyncSession,
    services: Services,
    *,
    channel: str,
    recipient: str,
    text: str,
    buttons: tuple[Button, ...] = (),
    report_id: int | None = None,
    dedup_key: str | None = None,
    kind: str = "reply",
    inbound_at: datetime | None = None,
    check_duplicate: bool = True,
) -> None:
    """Queue a message to a citizen; the outbox sender delivers it after commit.

    `inbound_at` is when the citizen last wrote, when the caller knows it (a reply to the
    message being processed); otherwise it is looked up.
    """
    msg = OutboundMessage(
        channel=channel,
        recipient=recipient,
        text=text,
        buttons=buttons,
        last_inbound_at=inbound_at or await last_inbound_at(session, recipient),
    )
    if dedup_key is not None and check_duplicate:
        existing = (await session.exec(select(Outbox).where(Outbox.dedup_key == dedup_key))).first()
        if existing is not None:
            return
    session.add(
        Outbox(
            kind=kind,
            channel=channel,
            recipient=recipient,
            report_id=report_id,
            payload=outbound_to_dict(msg),
            dedup_key=dedup_key,
        )
    )
    services.outbox_wake.set()


async def find_by_code(session: AsyncSession, code: str) -> Report | None:
    """The report with tracking code `code` (case-insensitive)."""
    stmt = select(Report).where(Report.code == code.strip().upper())
    return (await session.exec(stmt)).first()


def status_text(services: Services, report: Report) -> str:
    """The citizen-facing status line of a report."""
    texts = services.texts
    sector = report.sector or "chưa phân loại"
    if services.classifier is not None and report.sector in services.classifier.sectors:
        sector = services.classifier.sectors[report.sector].name
    status = texts.get(f"status.{report.status}", agency=report.agency or "cơ quan chức năng")
    return texts.get(
        "dialog.status_line",
        code=report.code,
        sector=sector,
        status=status,
        updated=local_time(services, report.updated_at),
    )
