"""The integration API under /api/v1/ (bearer tokens from PAHT_API_TOKENS).

Agencies and the central system see a pseudonym for the citizen unless the citizen agreed
to share their identity; phone numbers are never returned otherwise. A merged duplicate has
`status: "merged"` and `duplicate_of: <the original's code>`.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.keys import SERVICES
from gateway.ops.privacy import pseudonym
from gateway.services import Services
from gateway.web.open311 import parse_w3c, w3c
from gateway.web.openapi import OPENAPI
from store.models import Citizen, InboundEvent, Report
from store.repos import reports as repo

MAX_LIMIT = 200


def _authorized(request: web.Request) -> None:
    tokens = request.app[SERVICES].settings.api_tokens
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    given = token.strip().encode("utf-8", "replace")  # bytes: non-ASCII str would raise
    if scheme.lower() != "bearer" or not token or not any(
        hmac.compare_digest(given, t.encode()) for t in tokens
    ):
        raise web.HTTPUnauthorized(
            text='{"error": "a valid bearer token is required"}',
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="paht"'},
        )


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f'{{"error": "{message}"}}', content_type="application/json")


def _paging(query: Any) -> tuple[int, int]:
    """`limit` (1..200, default 50) and `offset` from the query string."""
    try:
        limit = min(MAX_LIMIT, max(1, int(query.get("limit", "50"))))
        offset = max(0, int(query.get("offset", "0")))
    except ValueError as exc:
        raise _bad("limit/offset must be integers") from exc
    return limit, offset


def _listed(query: Any, field: str) -> list[str]:
    """A comma-separated filter of the query string, or no filter."""
    return str(query[field]).split(",") if query.get(field) else []


def citizen_view(services: Services, citizen: Citizen | None) -> dict[str, Any]:
    """Who reported: a pseudonym, plus name and phone only with the citizen's consent."""
    if citizen is None:
        return {}
    secret = services.settings.session_secret
    view: dict[str, Any] = {"pseudonym": pseudonym(citizen.id or 0, secret)}
    if citizen.consent_share_identity:
        view.update(name=citizen.display_name, phone=citizen.phone)
    return view


def report_summary(services: Services, r: Report, codes: dict[int, Report] | None = None
                   ) -> dict[str, Any]:
    """The list view of a report; `codes` holds the originals of merged duplicates."""
    original = (codes or {}).get(r.duplicate_of) if r.duplicate_of is not None else None
    return {
        "code": r.code,
        "status": r.status,
        "channel": r.channel,
        "sector": r.sector,
        "score": r.score,
        "needs_review": r.needs_review,
        "urgent": r.urgent,
        "agency": r.agency,
        "text": r.text,
        "transcript": r.transcript,
        "address": r.address,
        "location": {"lat": r.lat, "lon": r.lon} if r.lat is not None else None,
        "submitted_at": w3c(r.submitted_at),
        "updated_at": w3c(r.updated_at),
        "duplicate_of": original.code if original is not None else None,
    }


async def _originals(session: AsyncSession, found: list[Report]) -> dict[int, Report]:
    return await repo.by_ids(session, {r.duplicate_of for r in found if r.duplicate_of})


async def list_reports(request: web.Request) -> web.Response:
    """GET /api/v1/reports?status=&sector=&channel=&since=&until=&limit=&offset="""
    _authorized(request)
    services = request.app[SERVICES]
    q = request.query
    limit, offset = _paging(q)
    try:
        since = parse_w3c(q["since"]) if q.get("since") else None
        until = parse_w3c(q["until"]) if q.get("until") else None
    except ValueError as exc:
        raise _bad("since/until must be W3C datetimes") from exc
    async with services.sessions() as session:
        total, rows = await repo.list_reports(
            session, statuses=_listed(q, "status"), sectors=_listed(q, "sector"),
            channels=_listed(q, "channel"), since=since, until=until, limit=limit,
            offset=offset)
        originals = await _originals(session, rows)
    return web.json_response({
        "total": total, "limit": limit, "offset": offset,
        "items": [report_summary(services, r, originals) for r in rows],
    })


async def get_report(request: web.Request) -> web.Response:
    """GET /api/v1/reports/{code}: the full record with classification and history."""
    _authorized(request)
    services = request.app[SERVICES]
    code = request.match_info["code"].upper()
    async with services.sessions() as session:
        report = await repo.find_by_code(session, code)
        if report is None:
            raise web.HTTPNotFound(text='{"error": "no such report"}',
                                   content_type="application/json")
        citizen = await session.get(Citizen, report.citizen_id)
        history = await repo.history_of(session, report.id or 0)
        classes = await repo.classifications_of(session, report.id or 0)
        actions = await repo.actions_of(session, report.id or 0)
        events = await repo.events_of(session, report.id or 0)
        originals = await _originals(session, [report])
    body = report_summary(services, report, originals)
    body.update(
        citizen=citizen_view(services, citizen),
        attachments=[{k: v for k, v in a.items() if k in ("kind", "mime", "path", "size",
                                                          "transcript", "duration_s")}
                     for a in report.attachments],
        flags=report.flags,
        rating=report.rating,
        transcript_confidence=report.transcript_confidence,
        classification=[{
            "sector": c.sector, "score": c.score, "runner_up": c.runner_up,
            "runner_up_score": c.runner_up_score, "needs_review": c.needs_review,
            "urgent": c.urgent, "matches": c.matches, "at": w3c(c.created_at),
        } for c in classes],
        history=[{"status": h.status, "note": h.note, "source": h.source, "at": w3c(h.at)}
                 for h in history],
        operator_actions=[{"action": a.action, "before": a.before, "after": a.after,
                           "note": a.note, "at": w3c(a.at)} for a in actions],
        messages=[{"channel": e.channel, "external_id": e.external_id,
                   "received_at": w3c(e.received_at)} for e in events],
    )
    return web.json_response(body)


def message_view(services: Services, e: InboundEvent, code: str | None) -> dict[str, Any]:
    """An accepted inbound message with the InboundMessage fields (sender pseudonymised)."""
    m = e.message
    scheme = e.sender.split(":", 1)[0]
    return {
        "channel": e.channel,
        "external_id": e.external_id,
        "sender": f"{scheme}:{pseudonym(hash_sender(e.sender), services.settings.session_secret)}",
        "text": m.get("text", ""),
        "kind": m.get("kind", "message"),
        "attachments": [{"kind": a.get("kind"), "mime": a.get("mime")}
                        for a in m.get("attachments") or []],
        "location": ({"lat": m["location"]["lat"], "lon": m["location"]["lon"]}
                     if m.get("location") else None),
        "received_at": w3c(datetime.fromisoformat(m["received_at"])) if m.get("received_at")
        else w3c(e.received_at),
        "accepted_at": w3c(e.accepted_at),
        "status": e.status,
        "report_code": code,
    }


def hash_sender(urn: str) -> int:
    """A stable integer for pseudonymising a URN."""
    return int.from_bytes(hashlib.sha256(urn.encode()).digest()[:6], "big")


async def list_messages(request: web.Request) -> web.Response:
    """GET /api/v1/messages?channel=&external_id=&limit=&offset= (the audit trail)."""
    _authorized(request)
    services = request.app[SERVICES]
    q = request.query
    limit, offset = _paging(q)
    async with services.sessions() as session:
        rows = await repo.messages(session, channel=q.get("channel") or None,
                                   external_id=q.get("external_id") or None,
                                   limit=limit, offset=offset)
    return web.json_response({"limit": limit, "offset": offset,
                              "items": [message_view(services, e, code) for e, code in rows]})


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI description of this API."""
    return web.json_response(OPENAPI)


def setup_api(app: web.Application) -> None:
    """Register the integration API."""
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/api/v1/reports", list_reports)
    app.router.add_get("/api/v1/reports/{code}", get_report)
    app.router.add_get("/api/v1/messages", list_messages)
