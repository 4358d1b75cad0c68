"""The report page: one thread of the citizen's messages and the centre's replies (live), the
place on a map with its ward, the classifier's reasons for the current sector, why the report
waits, the citizen's other reports, duplicates (merge also after forwarding), history, actions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain.duplicates import find_candidates
from gateway.domain.reports import report_text
from gateway.keys import SERVICES
from gateway.ops.privacy import mask_phone, mask_urn, pseudonym
from gateway.services import Services
from gateway.web.console.auth import now, operator_of
from gateway.web.console.labels import queue_reasons
from gateway.web.console.render import duration, highlight, render
from gateway.web.console.settings_file import load as load_config
from store.models import Citizen, InboundEvent, Operator, OperatorAction, Outbox, Report
from store.repos import console as console_repo
from store.repos import operators as operators_repo
from store.repos import reports as reports_repo
from store.repos import search as search_repo

THREAD_KINDS = ("reply", "notify")
OUTBOX_STATES = {"pending": "đang gửi", "sent": "đã gửi", "dead": "gửi không được",
                 "held": "chờ công dân nhắn lại", "fallback": "đã gửi qua SMS"}
# A runner-up is offered only with this much evidence of its own (not "Khác", not ~0).
RUNNER_UP_MIN_SCORE = 0.10

log = logging.getLogger("paht.console")

FLASH = {
    "confirmed": "Đã xác nhận phản ánh và đưa vào hàng chuyển cơ quan xử lý.",
    "sector": "Đã đổi lĩnh vực và xác nhận phản ánh.",
    "sector_only": "Đã đổi lĩnh vực.",
    "urgency": "Đã cập nhật mức khẩn.",
    "note": "Đã lưu ghi chú.",
    "reply": "Đã gửi trả lời cho công dân.",
    "rejected": "Đã đánh dấu không tiếp nhận và báo cho công dân.",
    "merged": "Đã gộp vào phản ánh gốc; công dân sẽ nhận thông báo của phản ánh gốc.",
    "stale": "Phản ánh đã được xử lý trước đó (có thể bởi cán bộ khác).",
    "invalid": "Dữ liệu không hợp lệ.",
    "claimed": "Anh/chị đã nhận xử lý phản ánh này.",
    "assigned": "Đã giao phản ánh cho cán bộ.",
    "unassigned": "Đã trả phản ánh về hàng chờ chung.",
    "ack": "Đã ghi nhận cảnh báo khẩn.",
    "transcript": "Đã sửa bản ghi lời nói và phân loại lại.",
    "transcript_only": "Đã sửa bản ghi lời nói (lĩnh vực giữ nguyên vì phản ánh đã xác nhận).",
}


@dataclass
class ThreadItem:
    """One line of the thread: a citizen's message or what the centre sent."""

    at: Any
    inbound: bool
    message: Message | None = None
    text: str = ""
    state: str = ""
    key: str = ""


def thread_of(messages: list[Message], sent: list[Outbox]) -> list[ThreadItem]:
    """The citizen's messages and the centre's replies and notices, in time order."""
    items = [ThreadItem(m.event.received_at, True, m, key=f"in-{m.event.id}") for m in messages]
    items += [ThreadItem(o.created_at, False, None, str(o.payload.get("text") or ""),
                         OUTBOX_STATES.get(o.status, o.status), key=f"out-{o.id}")
              for o in sent]
    items.sort(key=lambda i: (i.at, not i.inbound))
    return items


def sector_scores(services: Services, text: str) -> dict[str, float]:
    """The classifier's probability of every sector for this text ({} without a classifier)."""
    clf = services.classifier
    if clf is None or not text.strip():
        return {}
    try:
        return dict(clf.probabilities(clf.evidence(text)))
    except Exception:
        log.exception("scoring failed")
        return {}


@dataclass
class Message:
    """One inbound message of the report, with its media resolved to local URLs."""

    event: InboundEvent
    text: str
    kind: str
    media: list[dict[str, Any]] = field(default_factory=list)
    location: dict[str, Any] | None = None
    postback: str | None = None


def media_url(att: dict[str, Any]) -> str | None:
    """The /media URL of a stored attachment, if it was downloaded."""
    path = att.get("path")
    return f"/media/{path}" if path else None


def messages_of(report: Report, events: list[InboundEvent]) -> tuple[list[Message], list[dict]]:
    """The report's messages in order and the attachments that belong to no message."""
    by_url = {a.get("url"): a for a in report.attachments}
    used: set[int] = set()
    out: list[Message] = []
    for event in events:
        data = event.message or {}
        media = []
        for att in data.get("attachments") or []:
            stored = by_url.get(att.get("url"), att)
            used.add(id(stored))
            media.append({**stored, "src": media_url(stored)})
        out.append(Message(event, str(data.get("text") or ""), str(data.get("kind") or ""),
                           media, data.get("location"), data.get("postback")))
    rest = [{**a, "src": media_url(a)} for a in report.attachments if id(a) not in used]
    return out, rest


def can_see_phone(op: Operator) -> bool:
    """Supervisors and admins see phone numbers; operators must ask (and it is logged)."""
    return op.role in ("supervisor", "admin")


def citizen_view(services: Services, report: Report, citizen: Citizen | None,
                 op: Operator, revealed: bool) -> dict[str, Any]:
    """Who wrote: pseudonym always; the phone masked unless the operator may see it."""
    show = revealed or can_see_phone(op)
    phone = citizen.phone if citizen else None
    if phone is None and report.sender.startswith("tel:"):
        phone = report.sender[4:]
    return {
        "pseudonym": pseudonym(report.citizen_id, services.settings.session_secret),
        "name": citizen.display_name if citizen else None,
        "consent": bool(citizen and citizen.consent_share_identity),
        "phone": (phone if show else mask_phone(phone)) if phone else None,
        "phone_hidden": bool(phone) and not show,
        "sender": report.sender if show else mask_urn(report.sender)
        if report.sender.startswith("tel:") else report.sender,
    }


async def load_report(db: AsyncSession, report_id: str) -> Report:
    """The report with this id, or 404."""
    try:
        rid = int(report_id)
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    report = await db.get(Report, rid)
    if report is None or report.status == "draft":
        raise web.HTTPNotFound()
    return report


def agency_of(services: Services, sector: str | None, text: str) -> str | None:
    """The agency the sector routes this text to."""
    clf = services.classifier
    if clf is None or not sector or sector not in clf.sectors:
        return None
    try:
        return str(clf.route(sector, text).agency)
    except Exception:
        return str(clf.sectors[sector].agency)


async def load_thread(services: Services, db: AsyncSession, report: Report
                      ) -> tuple[list[ThreadItem], list[dict[str, Any]], list[Message]]:
    """The report's thread, the attachments of no message, and its messages."""
    rid = report.id or 0
    events = await console_repo.report_events(db, rid)
    sent = await console_repo.report_outbox(db, rid, THREAD_KINDS)
    messages, loose = messages_of(report, events)
    return thread_of(messages, sent), loose, messages


async def report_page(request: web.Request, revealed: bool = False) -> web.StreamResponse:
    """The full page of one report."""
    services = request.app[SERVICES]
    op = operator_of(request)
    cfg = load_config(services.settings.config_dir)
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        rid = report.id or 0
        citizen = await db.get(Citizen, report.citizen_id)
        thread, loose, _ = await load_thread(services, db, report)
        marks = await console_repo.thread_marks(db, rid)
        history = await console_repo.report_history(db, rid)
        actions = await operators_repo.report_actions(db, rid)
        verdicts = await reports_repo.classifications_of(db, rid)
        verdict = verdicts[-1] if verdicts else None
        candidates = await find_candidates(db, services, report)
        original = await db.get(Report, report.duplicate_of) if report.duplicate_of else None
        others = await search_repo.reports_of_citizen(db, report.citizen_id, rid)
        operators = [o for o in await operators_repo.all_operators(db) if o.active]
    text = report_text(report)
    scores = sector_scores(services, text)
    score = scores.get(report.sector or "") if scores else report.score
    runner = report.runner_up
    runner_score = scores.get(runner or "", 0.0) if scores else (
        verdict.runner_up_score if verdict else 0.0)
    runner_ok = bool(runner and runner != report.sector and runner != "khac"
                     and runner_score >= RUNNER_UP_MIN_SCORE)
    sla = timedelta(minutes=services.settings.console_sla_minutes)
    deadline = (report.submitted_at or report.created_at) + sla
    clf = services.classifier
    names = {o.id: o.display_name or o.username for o in operators}
    canned = [(key, label, services.texts.get(f"canned.{key}", code=report.code or ""))
              for key, label in cfg.canned if services.texts.has(f"canned.{key}")]
    return render(
        request, "report.html", report=report, thread=thread, loose_media=loose,
        thread_mark=f"{marks[0]}-{marks[1]}",
        citizen=citizen_view(services, report, citizen, op, revealed),
        segments=highlight(text, report.matches), verdict=verdict, history=history,
        actions=actions, candidates=candidates, original=original, others=others,
        agency=report.agency or agency_of(services, report.sector, text),
        sectors=dict(clf.sectors) if clf is not None else {},
        subscribers=[f.split(":", 1)[1] for f in report.flags if f.startswith("subscriber:")],
        flash=FLASH.get(request.query.get("done", "")), deadline=deadline,
        overdue=deadline < now(), remaining=duration(deadline - now()),
        score=score, runner_ok=runner_ok, runner_score=runner_score,
        reasons=queue_reasons(report, services.settings.review_policy),
        ward=cfg.ward_at(report.lat, report.lon), operators=operators,
        assignee=names.get(report.assigned_to) if report.assigned_to else None,
        canned=canned, may_assign=op.role in ("supervisor", "admin"),
    )


async def thread_fragment(request: web.Request) -> web.StreamResponse:
    """Only the thread of a report, for the page's live refresh (X-Thread-Mark changes with
    every new message or reply)."""
    services = request.app[SERVICES]
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        thread, _, _ = await load_thread(services, db, report)
        marks = await console_repo.thread_marks(db, report.id or 0)
    resp = render(request, "_thread.html", report=report, thread=thread)
    resp.headers["X-Thread-Mark"] = f"{marks[0]}-{marks[1]}"
    return resp


async def reveal_phone(request: web.Request) -> web.StreamResponse:
    """Show the citizen's phone number to an operator, and log that it was shown."""
    services = request.app[SERVICES]
    op = operator_of(request)
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        db.add(OperatorAction(report_id=report.id, operator_id=op.id, action="reveal_phone",
                              note="Xem số điện thoại của công dân"))
        await db.commit()
    return await report_page(request, revealed=True)
