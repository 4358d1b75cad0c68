"""What an operator does to a report. Every action is one transaction with its audit row.

Merging records the new citizen as a subscriber of the original report in the original's
``flags`` as ``"subscriber:<citizen_id>"`` (deduplicated); whoever notifies citizens of the
original's progress sends the same update to each subscriber's channel.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain import reports
from gateway.keys import SERVICES
from gateway.services import Services
from gateway.web.console.auth import operator_of
from gateway.web.console.report import agency_of, load_report
from store.models import Operator, OperatorAction, Report, utcnow

MAX_TEXT = 2000
REJECT_KINDS = {"spam": "Tin rác / quấy rối", "out_of_scope": "Không thuộc phạm vi tiếp nhận"}
OPEN = ("submitted", "confirmed", "forwarded", "in_progress")


def subscriber_flag(citizen_id: int) -> str:
    """How a merged report's citizen is subscribed to the original's updates."""
    return f"subscriber:{citizen_id}"


def _done(report: Report, key: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/console/reports/{report.id}?done={key}")


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: str(v)[:MAX_TEXT].strip() for k, v in form.items() if isinstance(v, str)}


def _audit(db: AsyncSession, report: Report, op: Operator, action: str,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
           note: str | None = None) -> None:
    db.add(OperatorAction(report_id=report.id, operator_id=op.id, action=action,
                          before=before or {}, after=after or {}, note=note))


async def _commit(db: AsyncSession, report: Report) -> None:
    """Commit; a unique outbox key already taken means another operator got there first."""
    rid = report.id
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise web.HTTPSeeOther(f"/console/reports/{rid}?done=stale") from None


def _touch(db: AsyncSession, report: Report) -> None:
    report.updated_at = utcnow()
    db.add(report)


async def _confirm(db: AsyncSession, services: Services, report: Report, op: Operator) -> None:
    _audit(db, report, op, "confirm", {"status": report.status},
           {"status": "confirmed", "sector": report.sector, "agency": report.agency})
    report.needs_review = False
    await reports.confirm(db, services, report, source="operator")


async def confirm(request: web.Request) -> web.StreamResponse:
    """Confirm the classifier's sector; the forwarding is queued in the same transaction."""
    services = request.app[SERVICES]
    op = operator_of(request)
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        if report.status != "submitted":
            raise _done(report, "stale")
        await _confirm(db, services, report, op)
        await _commit(db, report)
    raise _done(report, "confirmed")


async def change_sector(request: web.Request) -> web.StreamResponse:
    """Put the report under another sector (audited with before/after), then confirm it."""
    services = request.app[SERVICES]
    op = operator_of(request)
    form = await _form(request)
    clf = services.classifier
    sector = form.get("sector", "")
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        if clf is None or sector not in clf.sectors:
            raise _done(report, "invalid")
        if report.status not in ("submitted", "confirmed"):
            raise _done(report, "stale")
        before = {"sector": report.sector, "agency": report.agency, "score": report.score,
                  "runner_up": report.runner_up}
        report.sector = sector
        report.agency = agency_of(services, sector, reports.report_text(report))
        _audit(db, report, op, "change_sector", before,
               {"sector": sector, "agency": report.agency}, form.get("note") or None)
        _touch(db, report)
        key = "sector_only"
        if report.status == "submitted" and form.get("then") != "stay":
            await _confirm(db, services, report, op)
            key = "sector"
        await _commit(db, report)
    raise _done(report, key)


async def set_urgency(request: web.Request) -> web.StreamResponse:
    """Mark or unmark the report as urgent."""
    services = request.app[SERVICES]
    op = operator_of(request)
    form = await _form(request)
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        urgent = form.get("urgent") == "1"
        _audit(db, report, op, "set_urgency", {"urgent": report.urgent}, {"urgent": urgent})
        report.urgent = urgent
        _touch(db, report)
        await db.commit()
    raise _done(report, "urgency")


async def add_note(request: web.Request) -> web.StreamResponse:
    """An internal note (operators only; the citizen does not see it)."""
    services = request.app[SERVICES]
    op = operator_of(request)
    note = (await _form(request)).get("note", "")
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        if not note:
            raise _done(report, "invalid")
        _audit(db, report, op, "note", note=note)
        await db.commit()
    raise _done(report, "note")


async def reply(request: web.Request) -> web.StreamResponse:
    """Send the citizen a message on the channel they used (texts.notify.operator_reply)."""
    services = request.app[SERVICES]
    op = operator_of(request)
    text = (await _form(request)).get("text", "")
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        if not text:
            raise _done(report, "invalid")
        message = services.texts.get("notify.operator_reply", code=report.code, note=text)
        await reports.queue_message(db, services, channel=report.channel,
                                    recipient=report.sender, text=message,
                                    report_id=report.id, kind="notify")
        _audit(db, report, op, "reply", after={"text": message}, note=text)
        await db.commit()
    raise _done(report, "reply")


async def reject(request: web.Request) -> web.StreamResponse:
    """Refuse the report as spam or out of scope, with a reason the citizen is told."""
    services = request.app[SERVICES]
    op = operator_of(request)
    form = await _form(request)
    kind, reason = form.get("kind", ""), form.get("reason", "")
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        if kind not in REJECT_KINDS or not reason:
            raise _done(report, "invalid")
        if report.status != "submitted":
            raise _done(report, "stale")
        _audit(db, report, op, "reject", {"status": report.status},
               {"status": "rejected", "kind": kind}, reason)
        report.status = "rejected"
        report.flags = sorted({*report.flags, kind})
        _touch(db, report)
        reports.add_history(db, report, "rejected", note=reason, source="operator")
        await reports.queue_message(
            db, services, channel=report.channel, recipient=report.sender,
            text=services.texts.get("notify.rejected", code=report.code, note=reason),
            report_id=report.id, kind="notify", dedup_key=f"rejected:{report.id}",
        )
        await _commit(db, report)
    raise _done(report, "rejected")


def _merged_text(services: Services, report: Report, original: Report) -> str:
    """The citizen's notice that their report joined an earlier one."""
    return services.texts.get("notify.merged", code=report.code, original=original.code)


async def merge(request: web.Request) -> web.StreamResponse:
    """Mark the report a duplicate of an earlier open one and subscribe its citizen to it."""
    services = request.app[SERVICES]
    op = operator_of(request)
    form = await _form(request)
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        try:
            original = await db.get(Report, int(form.get("original", "")))
        except ValueError:
            original = None
        if original is None or original.id == report.id or original.status not in OPEN:
            raise _done(report, "invalid")
        if original.duplicate_of is not None or report.status != "submitted":
            raise _done(report, "stale")
        _audit(db, report, op, "merge", {"status": report.status, "duplicate_of": None},
               {"status": "rejected", "duplicate_of": original.id, "original": original.code,
                "subscriber": report.citizen_id}, form.get("note") or None)
        report.duplicate_of = original.id
        report.status = "rejected"
        report.flags = sorted({*report.flags, "duplicate"})
        _touch(db, report)
        flag = subscriber_flag(report.citizen_id)
        if flag not in original.flags and original.citizen_id != report.citizen_id:
            original.flags = [*original.flags, flag]
            _touch(db, original)
        reports.add_history(db, report, "rejected", source="operator",
                            note=f"Trùng với phản ánh {original.code}")
        await reports.queue_message(
            db, services, channel=report.channel, recipient=report.sender,
            text=_merged_text(services, report, original), report_id=report.id,
            kind="notify", dedup_key=f"merged:{report.id}",
        )
        await _commit(db, report)
    raise _done(report, "merged")
