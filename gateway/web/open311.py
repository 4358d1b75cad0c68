"""Open311 GeoReport v2 under /open311/v2/ (http://wiki.open311.org/GeoReport_v2).

Field names and types follow the spec, because real clients (FixMyStreet's Open311 module,
mobile apps) break on less: ids are strings, `metadata` is a boolean, `lat`/`long` are numbers,
datetimes are W3C in UTC, errors are `[{"code", "description"}]`. The citizen's phone and name
are never exposed here. A merged duplicate is `open` or `closed` with its original, and its
`status_notes` name the original.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET

import phonenumbers
from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import strip_controls
from gateway.domain import reports
from gateway.domain.lifecycle import OPEN
from gateway.keys import SERVICES
from gateway.ops.privacy import mask_public_text
from gateway.services import Services
from gateway.web.media_access import signed_media_url
from gateway.web.ratelimit import limited_response
from store.models import Report, ReportStatus, utcnow
from store.repos import citizens as citizens_repo
from store.repos import reports as reports_repo

PREFIX = "/open311/v2"
OPEN_STATUSES: frozenset[str] = OPEN
CLOSED_STATUSES: frozenset[str] = frozenset({ReportStatus.RESOLVED, ReportStatus.REJECTED})
MAX_RESULTS = 1000
# Longest value accepted per POST field (characters); anything longer is a 400.
FIELD_LIMITS = {"description": 4000, "address_string": 500, "media_url": 2000,
                "api_key": 200, "jurisdiction_id": 100, "service_code": 32, "email": 254,
                "device_id": 200, "account_id": 200, "first_name": 100, "last_name": 100,
                "phone": 32, "address_id": 100, "lat": 40, "long": 40}
MAX_FIELD = 2000  # any other field
MAX_CODES = 100  # service_request_id values in one GET


def w3c(when: datetime | None) -> str | None:
    """W3C datetime in UTC, e.g. 2026-11-22T03:04:05Z."""
    if when is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_w3c(value: str) -> datetime:
    """Parse a W3C datetime (a date alone means midnight UTC)."""
    value = value.strip().replace("Z", "+00:00").replace(" ", "+")
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _xml(root: str, item: str, rows: list[dict[str, Any]]) -> str:
    top = ET.Element(root)
    for row in rows:
        node = ET.SubElement(top, item)
        for key, value in row.items():
            child = ET.SubElement(node, key)
            if isinstance(value, list):
                child.text = ",".join(str(v) for v in value)
            elif isinstance(value, bool):
                child.text = "true" if value else "false"
            elif value is not None:
                child.text = strip_controls(str(value))
    return '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(top, encoding="unicode")


def respond(fmt: str, root: str, item: str, rows: list[dict[str, Any]], status: int = 200
            ) -> web.Response:
    """Answer in JSON or XML, as the URL's extension asked."""
    if fmt == "xml":
        return web.Response(text=_xml(root, item, rows), status=status,
                            content_type="text/xml", charset="utf-8")
    # allow_nan=False: a stored NaN/Infinity must never make the feed invalid JSON.
    return web.json_response(rows, status=status,
                             dumps=lambda v: json.dumps(v, allow_nan=False))


def error(fmt: str, status: int, description: str) -> web.Response:
    """The spec's error list."""
    return respond(fmt, "errors", "error", [{"code": status, "description": description}], status)


def _fmt(request: web.Request) -> str:
    fmt = request.match_info.get("fmt", "json")
    if fmt not in ("json", "xml"):
        raise web.HTTPNotFound()
    return fmt


async def _params(request: web.Request) -> dict[str, str]:
    params = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        form = await request.post()
        params.update({k: str(v) for k, v in form.items() if isinstance(v, str)})
    return params


def _too_long(params: dict[str, str]) -> str | None:
    """The first field longer than its limit, if any."""
    for key, value in params.items():
        if len(value) > FIELD_LIMITS.get(key, MAX_FIELD) or len(key) > 64:
            return key[:64]
    return None


def _coordinate(value: str | None, bound: float) -> float | None:
    """A finite coordinate within ±bound; ValueError otherwise (inf, nan, 999, -1e308)."""
    if not value:
        return None
    number = float(value)
    if not math.isfinite(number) or not -bound <= number <= bound:
        raise ValueError(value)
    return number


def _finite(value: float | None) -> float | None:
    """A stored coordinate for the feed: None when not a finite number."""
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def _jurisdiction_ok(services: Services, params: dict[str, str]) -> bool:
    given = params.get("jurisdiction_id")
    return not given or given == services.settings.open311_jurisdiction_id


def _services_rows(services: Services) -> list[dict[str, Any]]:
    clf = services.classifier
    if clf is None:
        return []
    return [
        {
            "service_code": s.code,
            "service_name": s.name,
            "description": s.description,
            "metadata": False,
            "type": "realtime",
            "keywords": [],
            "group": s.agency,
        }
        for s in clf.sectors.values()
    ]


def request_row(services: Services, report: Report, notes: str | None,
                original: Report | None = None) -> dict[str, Any]:
    """One report as a GeoReport v2 service request (no personal data); a merged one shows
    its original's open/closed state and names it."""
    base = services.settings.public_base_url.rstrip("/")
    media = next((a for a in report.attachments if a.get("kind") == "image" and a.get("path")),
                 None)
    clf = services.classifier
    name = clf.sectors[report.sector].name if clf and report.sector in clf.sectors else None
    shown = report.status
    if report.status == ReportStatus.MERGED and original is not None:
        shown = original.status
        notes = services.texts.get("status.merged_note", original=original.code)
    return {
        "service_request_id": report.code,
        "status": "open" if shown in OPEN_STATUSES else "closed",
        "status_notes": notes,
        "service_name": name,
        "service_code": report.sector,
        # A public feed: phones, e-mails, ID numbers and self-given names are masked.
        "description": mask_public_text(reports.report_text(report)),
        "agency_responsible": report.agency,
        "service_notice": None,
        "requested_datetime": w3c(report.submitted_at or report.created_at),
        "updated_datetime": w3c(report.updated_at),
        "expected_datetime": None,
        "address": mask_public_text(report.address) if report.address else None,
        "address_id": None,
        "zipcode": None,
        "lat": _finite(report.lat),
        "long": _finite(report.lon),
        "media_url": signed_media_url(services.settings, media["path"], base) if media else None,
    }


async def _rows(services: Services, session: AsyncSession, found: list[Report]
                ) -> list[dict[str, Any]]:
    """The service requests of `found`, with their latest notes and merged originals."""
    ids = [r.id for r in found if r.id is not None]
    notes = {h.report_id: h.note for h in await reports_repo.notes_of(session, ids)
             if h.note and not h.note.startswith("rating=")}
    originals = await reports_repo.by_ids(
        session, {r.duplicate_of for r in found if r.duplicate_of is not None})
    return [request_row(services, r, notes.get(r.id or 0),
                        originals.get(r.duplicate_of) if r.duplicate_of else None)
            for r in found]


async def list_services(request: web.Request) -> web.Response:
    """GET services.(json|xml): one service per sector code."""
    fmt = _fmt(request)
    services = request.app[SERVICES]
    if not _jurisdiction_ok(services, dict(request.query)):
        return error(fmt, 404, "jurisdiction_id not found")
    return respond(fmt, "services", "service", _services_rows(services))


async def service_definition(request: web.Request) -> web.Response:
    """GET services/{code}.(json|xml): no extra attributes (metadata is false)."""
    fmt = _fmt(request)
    services = request.app[SERVICES]
    code = request.match_info["code"]
    if services.classifier is None or code not in services.classifier.sectors:
        return error(fmt, 404, f"service_code {code} not found")
    body = {"service_code": code, "attributes": []}
    if fmt == "xml":
        return respond(fmt, "service_definition", "service", [body])
    return web.json_response(body)


async def list_requests(request: web.Request) -> web.Response:
    """GET requests.(json|xml) with service_request_id, service_code, status, dates."""
    fmt = _fmt(request)
    services = request.app[SERVICES]
    params = dict(request.query)
    if not _jurisdiction_ok(services, params):
        return error(fmt, 404, "jurisdiction_id not found")
    codes: list[str] = []
    start = end = None
    sectors: list[str] = []
    wanted: set[str] = set()
    if params.get("service_request_id"):
        codes = [c.strip().upper()[:40]
                 for c in params["service_request_id"].split(",") if c.strip()]
        if len(codes) > MAX_CODES:
            return error(fmt, 400, f"at most {MAX_CODES} service_request_id values")
    else:
        try:
            end = parse_w3c(params["end_date"]) if params.get("end_date") else utcnow()
            start = (parse_w3c(params["start_date"]) if params.get("start_date")
                     else end - timedelta(days=90))
        except (ValueError, OverflowError):
            return error(fmt, 400, "start_date and end_date must be W3C datetimes")
        if params.get("service_code"):
            sectors = params["service_code"].split(",")[:MAX_CODES]
        for part in filter(None, params.get("status", "").split(",")):
            if part not in ("open", "closed"):
                return error(fmt, 400, "status must be open or closed")
            wanted |= OPEN_STATUSES if part == "open" else CLOSED_STATUSES
    async with services.sessions() as session:
        found = await reports_repo.service_requests(
            session, codes=codes, start=start, end=end, sectors=sectors,
            effective_statuses=wanted, limit=MAX_RESULTS)
        rows = await _rows(services, session, found)
    return respond(fmt, "service_requests", "request", rows)


async def get_request(request: web.Request) -> web.Response:
    """GET requests/{id}.(json|xml)."""
    fmt = _fmt(request)
    services = request.app[SERVICES]
    if not _jurisdiction_ok(services, dict(request.query)):
        return error(fmt, 404, "jurisdiction_id not found")
    code = request.match_info["id"]
    if len(code) > 40:
        return error(fmt, 404, "service_request_id not found")
    async with services.sessions() as session:
        report = await reports_repo.find_by_code(session, code)
        if report is None or report.status == ReportStatus.DRAFT:
            return error(fmt, 404, "service_request_id not found")
        rows = await _rows(services, session, [report])
    return respond(fmt, "service_requests", "request", rows)


async def create_request(request: web.Request) -> web.Response:
    """POST requests.(json|xml): a report from a third-party app or portal (api_key needed)."""
    fmt = _fmt(request)
    services = request.app[SERVICES]
    refused = limited_response(request, "open311")
    if refused is not None:
        return refused
    params = await _params(request)
    keys = services.settings.open311_api_keys
    key = params.get("api_key", "")
    given = key.encode("utf-8", "replace")  # bytes: compare_digest refuses non-ASCII str
    if not key or not any(hmac.compare_digest(given, k.encode()) for k in keys):
        return error(fmt, 403, "api_key is missing or not valid")
    field = _too_long(params)
    if field is not None:
        return error(fmt, 400, f"{field} is too long")
    if not _jurisdiction_ok(services, params):
        return error(fmt, 404, "jurisdiction_id not found")
    code = params.get("service_code", "")
    if services.classifier is not None and code not in services.classifier.sectors:
        return error(fmt, 400, "service_code is missing or not valid")
    try:
        lat = _coordinate(params.get("lat"), 90.0)
        lon = _coordinate(params.get("long"), 180.0)
    except ValueError:
        return error(fmt, 400, "lat and long must be finite numbers in range")
    if (lat is None) != (lon is None):
        return error(fmt, 400, "lat and long must be given together and be valid")
    address = strip_controls(params.get("address_string") or "").strip() or None
    if lat is None and not address:
        return error(fmt, 400, "a location is required: lat and long, or address_string")
    description = strip_controls(params.get("description") or "").strip()
    sender, phone = _requester(key, params)
    async with services.sessions() as session:
        citizen = await citizens_repo.resolve_citizen(session, sender, "open311", phone=phone,
                                             seen_at=utcnow())
        report = Report(channel="open311", citizen_id=citizen.id or 0, sender=sender,
                        text=description, lat=lat, lon=lon, address=address)
        if params.get("media_url", "").startswith(("https://", "http://")):
            report.attachments = [{"kind": "image", "url": params["media_url"]}]
        session.add(report)
        await session.flush()
        await reports.submit(session, services, report)
        if code and report.sector != code and services.classifier is not None:
            # The requester chose the service: it wins over the classifier's guess.
            report.runner_up, report.sector = report.sector, code
            report.agency = services.classifier.route(code, description).agency
            session.add(report)
        await session.commit()
    return respond(fmt, "service_requests", "request",
                   [{"service_request_id": report.code, "service_notice": None,
                     "account_id": params.get("account_id")}])


def _requester(api_key: str, params: dict[str, str]) -> tuple[str, str | None]:
    phone = None
    if params.get("phone"):
        try:
            parsed = phonenumbers.parse(params["phone"], "VN")
            if phonenumbers.is_valid_number(parsed):
                phone = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            phone = None
    if phone:
        return f"tel:{phone}", phone
    who = params.get("email") or params.get("device_id") or params.get("account_id") or "anon"
    digest = hashlib.sha256(f"{api_key}:{who}".encode()).hexdigest()[:16]
    return f"open311:{digest}", None


def setup_open311(app: web.Application) -> None:
    """Register the GeoReport v2 routes."""
    r = app.router
    r.add_get(PREFIX + "/services.{fmt}", list_services)
    r.add_get(PREFIX + "/services/{code}.{fmt}", service_definition)
    r.add_get(PREFIX + "/requests.{fmt}", list_requests)
    r.add_post(PREFIX + "/requests.{fmt}", create_request)
    r.add_get(PREFIX + "/requests/{id}.{fmt}", get_request)
