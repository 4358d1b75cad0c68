"""Status changes coming back from the central system, told to the citizen.

A change (callback, poll, or our own delivery) goes into the report's history, then to the
citizen on the channel they used (texts `notify.*` in config/messages.vi.toml) and to the
subscribers of merged duplicates (flags `subscriber:<citizen_id>` on the original report, each
reached on their most recently used identity). After resolution the reporter is asked to rate
the handling 1–5. The OutboxSender delivers these rows: when a channel's reply window has
closed it falls back to SMS if the phone is known, else holds them until the citizen writes.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import Button
from channels.registry import CHANNELS as MESSAGING
from gateway.domain import reports
from gateway.services import Services
from store.models import Conversation, Identity, Report, utcnow

log = logging.getLogger("paht.notify")

CENTRAL_STATUSES = ("in_progress", "resolved", "rejected")
# The order of the life cycle: a change never goes backwards (a late or replayed event).
RANK = {"draft": 0, "submitted": 1, "confirmed": 2, "forwarded": 3, "in_progress": 4,
        "resolved": 5, "rejected": 5}
DEFAULT_AGENCY = "cơ quan chức năng"


def subscriber_ids(report: Report) -> list[int]:
    """Citizens who asked to follow this report (merged duplicates), from its flags."""
    ids: list[int] = []
    for flag in report.flags:
        head, _, value = flag.partition(":")
        if head == "subscriber" and value.isdigit() and int(value) != report.citizen_id:
            ids.append(int(value))
    return sorted(set(ids))


async def latest_identity(session: AsyncSession, citizen_id: int) -> Identity | None:
    """The chat identity a citizen used most recently (never-used ones last)."""
    stmt = (
        select(Identity)
        .where(Identity.citizen_id == citizen_id, col(Identity.channel).in_(list(MESSAGING)))
        .order_by(sa.case((col(Identity.last_inbound_at).is_(None), 1), else_=0),
                  col(Identity.last_inbound_at).desc(), col(Identity.id).desc())
        .limit(1)
    )
    return (await session.exec(stmt)).first()


async def tell(
    session: AsyncSession, services: Services, report: Report, key: str, note: str | None = None,
) -> int:
    """Queue the `notify.<key>` text to the reporter and every subscriber; returns how many."""
    text = services.texts.get(f"notify.{key}", code=report.code,
                              agency=report.agency or DEFAULT_AGENCY, note=note or "")
    if not note and text.rstrip().endswith(":"):
        text = text.rstrip().rstrip(":").rstrip() + "."  # "…đã được xử lý: " → "…đã được xử lý."
    targets: list[tuple[str, str]] = []
    if report.channel in MESSAGING:
        targets.append((report.channel, report.sender))
    # A report filed through Open311 or the API has no chat to answer in: use the citizen's
    # latest channel, if they ever wrote to us on one.
    ids = subscriber_ids(report) if targets else [report.citizen_id, *subscriber_ids(report)]
    for citizen_id in ids:
        ident = await latest_identity(session, citizen_id)
        if ident is not None:
            targets.append((ident.channel, ident.urn))
    seen: set[str] = set()
    for channel, urn in targets:
        if urn in seen:
            continue
        seen.add(urn)
        await reports.queue_message(
            session, services, channel=channel, recipient=urn, text=text, kind="notify",
            report_id=report.id, dedup_key=f"notify:{report.code}:{key}:{urn}"[:128],
        )
    return len(seen)


async def apply_status(
    session: AsyncSession, services: Services, report: Report, status: str,
    note: str | None = None, agency: str | None = None, source: str = "central",
) -> bool:
    """Move `report` to `status` (history + citizen messages); False if it is not a step on."""
    if status not in RANK or RANK[status] <= RANK.get(report.status, 0):
        log.info("status change ignored",
                 extra={"code": report.code, "have": report.status, "got": status})
        return False
    now = utcnow()
    report.status = status
    report.updated_at = now
    if agency:
        report.agency = agency[:255]
    if status in ("resolved", "rejected"):
        report.resolved_at = now
    session.add(report)
    reports.add_history(session, report, status, note=note, source=source)
    await session.flush()
    await tell(session, services, report, status, note)
    if status == "resolved":
        await ask_rating(session, services, report)
    log.info("status changed", extra={"code": report.code, "status": status, "source": source})
    return True


async def mark_forwarded(
    session: AsyncSession, services: Services, report: Report, central_ref: str | None,
) -> None:
    """The central system has the report: record its reference and tell the citizen."""
    if central_ref and not report.central_ref:
        report.central_ref = central_ref[:64]
        session.add(report)
    if report.status == "confirmed":
        await apply_status(session, services, report, "forwarded",
                           note=f"central_ref={central_ref}" if central_ref else None,
                           source="gateway")


async def ask_rating(session: AsyncSession, services: Services, report: Report) -> bool:
    """Put the reporter's conversation in the rating state and send the 1–5 question.

    A citizen who is composing a new report keeps their draft: no question then (the answer
    would land in the draft), and the report simply stays unrated.
    """
    if report.channel not in MESSAGING:
        return False  # filed through Open311 or the API: no conversation to rate in
    conv = (await session.exec(
        select(Conversation).where(Conversation.sender == report.sender))).first()
    if conv is None:
        conv = Conversation(sender=report.sender, channel=report.channel,
                            citizen_id=report.citizen_id)
    elif conv.report_id is not None and conv.state != "rating":
        log.info("rating not asked: a draft is open", extra={"code": report.code})
        return False
    conv.state, conv.report_id, conv.expires_at = "rating", report.id, None
    conv.last_activity_at = utcnow()
    session.add(conv)
    buttons = tuple(Button(str(n), f"rate:{n}") for n in range(1, 6))
    await reports.queue_message(
        session, services, channel=report.channel, recipient=report.sender,
        text=services.texts.get("notify.rate", code=report.code), buttons=buttons,
        report_id=report.id, dedup_key=f"rate:{report.code}", kind="notify",
    )
    return True
