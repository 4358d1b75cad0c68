"""What an operator does to a report. Every action is one transaction with its audit row;
status changes (confirm, reject, merge) go through `gateway.domain.lifecycle`, which writes
the history, the audit row and the outbox rows with them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain import reports
from gateway.domain.lifecycle import OPEN, Actor, allowed
from gateway.keys import SERVICES
from gateway.web.console.auth import operator_of
from gateway.web.console.report import agency_of, load_report, sector_scores
from store.models import Operator, OperatorAction, Report, ReportStatus, utcnow

MAX_TEXT = 2000
REJECT_KINDS = {"spam": "Tin rác / quấy rối", "out_of_scope": "Không thuộc phạm vi tiếp nhận"}


def _actor(op: Operator) -> Actor:
    return Actor.operator(op.id or 0)


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


async def confirm(request: web.Request) -> web.StreamResponse:
    """Confirm the classifier's sector; the forwarding is queued in the same transaction."""
    services = request.app[SERVICES]
    op = operator_of(request)
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        if report.status != ReportStatus.SUBMITTED:
            raise _done(report, "stale")
        await services.lifecycle.confirm(db, report, _actor(op))
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
        if report.status not in (ReportStatus.SUBMITTED, ReportStatus.CONFIRMED):
            raise _done(report, "stale")
        before = {"sector": report.sector, "agency": report.agency, "score": report.score,
                  "runner_up": report.runner_up}
        report.sector = sector
        report.agency = agency_of(services, sector, reports.report_text(report))
        # The score shown is the new sector's own (not the classifier's first choice).
        scores = sector_scores(services, reports.report_text(report))
        report.score = scores.get(sector) if scores else None
        _audit(db, report, op, "change_sector", before,
               {"sector": sector, "agency": report.agency, "score": report.score},
               form.get("note") or None)
        _touch(db, report)
        key = "sector_only"
        if report.status == ReportStatus.SUBMITTED and form.get("then") != "stay":
            await services.lifecycle.confirm(db, report, _actor(op))
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


async def correct_transcript(request: web.Request) -> web.StreamResponse:
    """Replace what speech-to-text heard with what the operator hears in the recording.

    The machine transcript is kept once (`transcript_machine`); a report still waiting for a
    decision is classified again on the corrected words (the trust gate's reasons too); a
    confirmed one keeps its sector — the central system has it already. Audited.
    """
    services = request.app[SERVICES]
    op = operator_of(request)
    text = (await _form(request)).get("transcript", "")
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        if not text or report.transcript is None:
            raise _done(report, "invalid")
        if report.status in (ReportStatus.RESOLVED, ReportStatus.REJECTED, ReportStatus.MERGED):
            raise _done(report, "stale")
        before = {"transcript": report.transcript, "sector": report.sector,
                  "score": report.score}
        if report.transcript_machine is None:
            report.transcript_machine = report.transcript
        report.transcript = text
        report.transcript_corrected_at = utcnow()
        key = "transcript_only"
        if report.status == ReportStatus.SUBMITTED:
            classification = reports.classify_report(services.classifier, report)
            if classification is not None:
                db.add(classification)
            key = "transcript"
        _audit(db, report, op, "correct_transcript", before,
               {"transcript": text, "sector": report.sector, "score": report.score})
        _touch(db, report)
        await db.commit()
    raise _done(report, key)


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
    """Send the citizen a message on the channel they used: the operator's words (wrapped in
    texts.notify.operator_reply), or a canned reply of config/console.toml sent as written."""
    services = request.app[SERVICES]
    op = operator_of(request)
    form = await _form(request)
    text, canned = form.get("text", ""), form.get("canned", "")
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        canned_text = (services.texts.get(f"canned.{canned}", code=report.code or "")
                       if canned and services.texts.has(f"canned.{canned}") else "")
        if not text and not canned_text:
            raise _done(report, "invalid")
        if canned_text and (not text or text == canned_text):
            message, text = canned_text, canned_text
        else:
            message = services.texts.get("notify.operator_reply", code=report.code, note=text)
        await services.lifecycle.notifier.queue(
            db, channel=report.channel, recipient=report.sender, text=message,
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
        if report.status != ReportStatus.SUBMITTED:  # after that the centre decides
            raise _done(report, "stale")
        await services.lifecycle.reject(db, report, _actor(op), reason, kind)
        await _commit(db, report)
    raise _done(report, "rejected")


async def merge(request: web.Request) -> web.StreamResponse:
    """Mark the report a duplicate of an earlier open one (also after forwarding); its citizen
    then follows the original."""
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
        if original.duplicate_of is not None or not allowed(report.status,
                                                            ReportStatus.MERGED):
            raise _done(report, "stale")
        await services.lifecycle.merge(db, report, original, _actor(op),
                                                   note=form.get("note") or None)
        await _commit(db, report)
    raise _done(report, "merged")
