"""Status changes from the central PAHT system: a signed callback, or Open311 polling.

Callback: `POST /api/v1/central/status`, body
`{"code", "status": "in_progress|resolved|rejected", "note", "agency", "event_id"}`, signed
`X-PAHT-Signature: sha256=<HMAC-SHA256 of the raw body with PAHT_CENTRAL_CALLBACK_SECRET>`.
Answers: 200 (applied, or a replayed `event_id`: `{"duplicate": true}`), 401 no signature,
403 bad signature, 400 malformed, 404 unknown code (and when no secret is configured).

Polling (open311 sink): GeoReport v2 `GET requests/{service_request_id}.json` knows only
`open` and `closed`; `closed` is read as resolved, `open` with `status_notes` or an
`updated_datetime` later than `requested_datetime` as in progress. A richer server may answer
our own statuses (`in_progress`, `resolved`, `rejected`) in `status`, which win.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from gateway.domain.lifecycle import CENTRAL_STATUSES, Lifecycle
from gateway.keys import SERVICES, SETTINGS
from gateway.services import Services
from gateway.web.ratelimit import json_too_deep
from store.forward import SIGNATURE_HEADER, DeliveryError, verify_signature
from store.models import ReportStatus
from store.repos import reports as repo

log = logging.getLogger("paht.central")
CALLBACK_PATH = "/api/v1/central/status"
MAX_BODY = 64_000


def _json_error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


def parse_event(body: bytes) -> dict[str, Any]:
    """Validate a callback body; raises ValueError with the reason."""
    data = json.loads(body.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    event: dict[str, Any] = {}
    for key in ("code", "status", "event_id"):
        value = data.get(key)
        if not isinstance(value, str | int) or not str(value).strip():
            raise ValueError(f"{key} is required")
        event[key] = str(value).strip()
    if event["status"] not in CENTRAL_STATUSES:
        raise ValueError("status must be in_progress, resolved or rejected")
    for key in ("note", "agency"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        event[key] = value.strip() if isinstance(value, str) and value.strip() else None
    if len(event["event_id"]) > 128 or len(event["code"]) > 40:
        raise ValueError("event_id or code is too long")
    if event["note"] is not None and len(event["note"]) > 4000:
        raise ValueError("note is too long")
    return event


async def apply_event(services: Services, event: dict[str, Any], source: str,
                      life: Lifecycle | None = None) -> str:
    """Dedup, find the report, apply the change: 'applied', 'duplicate', 'stale' or 'unknown'."""
    life = life or services.lifecycle
    async with services.sessions() as session:
        report = await repo.find_by_code(session, event["code"])
        if report is None:
            return "unknown"
        if not await repo.record_central_event(session, event, source):
            return "duplicate"
        changed = await life.apply_central(session, report, event["status"],
                                           note=event.get("note"), agency=event.get("agency"))
        await session.commit()
    return "applied" if changed else "stale"


async def status_callback(request: web.Request) -> web.Response:
    """POST /api/v1/central/status."""
    settings = request.app[SETTINGS]
    secret = settings.central_callback_secret
    if not secret:
        return _json_error(404, "central callback not configured")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _json_error(413, "body too large")
    body = await request.read()
    if len(body) > MAX_BODY:
        return _json_error(413, "body too large")
    header = request.headers.get(SIGNATURE_HEADER)
    if not header:
        return _json_error(401, "signature missing")
    if not header.isascii() or not verify_signature(body, header, secret):
        # (compare_digest raises on a non-ASCII str: such a header is simply wrong)
        log.warning("central callback with a bad signature")
        return _json_error(403, "bad signature")
    if json_too_deep(body):
        return _json_error(400, "malformed: nested too deeply")
    try:
        event = parse_event(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return _json_error(400, f"malformed: {exc}")
    outcome = await apply_event(request.app[SERVICES], event, "callback")
    if outcome == "unknown":
        return _json_error(404, "unknown code")
    return web.json_response({"ok": True, "code": event["code"].upper(), "outcome": outcome,
                              "duplicate": outcome == "duplicate"})


def setup_central(app: web.Application) -> None:
    """Register the central status callback route."""
    app.router.add_post(CALLBACK_PATH, status_callback)


# --- polling (open311 sink) -------------------------------------------------------------

def open311_status(item: dict[str, Any]) -> str | None:
    """Our status for a GeoReport v2 service request, or None while nothing happened."""
    status = str(item.get("status") or "").lower()
    if status in CENTRAL_STATUSES:
        return status
    if status == "closed":
        return ReportStatus.RESOLVED
    if status == "open" and (item.get("status_notes") or (
            item.get("updated_datetime") and
            item.get("updated_datetime") != item.get("requested_datetime"))):
        return ReportStatus.IN_PROGRESS
    return None


async def poll_central(services: Services, sink: Any, limit: int = 200) -> int:
    """Ask the Open311 endpoint about forwarded reports; apply what changed."""
    fetch = getattr(sink, "fetch_status", None)
    if fetch is None:
        return 0
    async with services.sessions() as session:
        pending = await repo.due_for_poll(
            session, (ReportStatus.FORWARDED, ReportStatus.IN_PROGRESS), limit)
    life = services.lifecycle
    applied = 0
    for code, ref, have in pending:
        try:
            item = await fetch(ref)
        except DeliveryError as exc:
            log.warning("central poll failed", extra={"code": code, "why": str(exc)[:200]})
            break  # the central system is down: try again next round
        status = open311_status(item) if item else None
        if status is None or status == have:
            continue
        event = {"code": code, "status": status, "event_id": f"poll:{ref}:{status}",
                 "note": item.get("status_notes") or None,
                 "agency": item.get("agency_responsible") or None}
        if await apply_event(services, event, "poll", life) == "applied":
            applied += 1
    return applied
