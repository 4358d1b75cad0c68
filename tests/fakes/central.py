"""A local fake of the central PAHT system: an Open311 GeoReport v2 endpoint and a JSON webhook.

It records every request (`requests`) and every record it accepted (`records`, keyed by the
Idempotency-Key, so a retried delivery is answered with the first answer and never stored
twice), and can be told to misbehave: `mode` = "ok" | "500" (HTTP 500) | "timeout" (never
answers until `release()`) | "drop" (closes the connection) | "reject" (HTTP 400).
Open311 (https://wiki.open311.org/GeoReport_v2/): `POST /open311/requests.json` (form, with
api_key), `GET /open311/requests/{id}.json`, and the non-standard `POST /open311/ratings.json`.
Webhook: `POST /webhook`, verified against `X-PAHT-Signature: sha256=<hmac>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "central-api-key"
SECRET = "central-webhook-secret"


@dataclass
class Record:
    """One accepted delivery."""

    key: str
    kind: str  # open311 | webhook | rating
    data: dict[str, Any]
    central_id: str
    status: str = "open"
    status_notes: str | None = None
    agency: str | None = None
    updated: str = "2026-11-23T08:00:00+07:00"


@dataclass
class FakeCentral:
    """State of the fake central system."""

    mode: str = "ok"
    api_key: str = API_KEY
    secret: str = SECRET
    requests: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, Record] = field(default_factory=dict)
    next_id: int = 5000
    delay: float = 0.0  # seconds each answer takes (to overlap concurrent senders)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Let requests stuck in "timeout" mode finish (at teardown)."""
        self._release.set()

    def keys(self) -> list[str]:
        """Idempotency keys of the accepted records, in order."""
        return list(self.records)

    def by_id(self, central_id: str) -> Record:
        """The record with this service_request_id."""
        return next(r for r in self.records.values() if r.central_id == central_id)

    async def _misbehave(self, request: web.Request) -> web.StreamResponse | None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "500":
            return web.json_response({"error": "internal"}, status=500)
        if self.mode == "reject":
            return web.json_response([{"code": 400, "description": "rejected"}], status=400)
        if self.mode == "timeout":
            await self._release.wait()
            return web.json_response({"error": "too late"}, status=504)
        if self.mode == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        return None

    def _accept(self, key: str, kind: str, data: dict[str, Any]) -> tuple[Record, bool]:
        if key in self.records:
            return self.records[key], False
        self.next_id += 1
        record = Record(key, kind, data, str(self.next_id))
        self.records[key] = record
        return record, True

    async def open311_create(self, request: web.Request) -> web.StreamResponse:
        """POST /open311/requests.json."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        key = request.headers.get("Idempotency-Key", "")
        self.requests.append({"path": request.path, "form": form, "key": key})
        bad = await self._misbehave(request)
        if bad is not None:
            return bad
        if form.get("api_key") != self.api_key:
            return web.json_response([{"code": 403, "description": "Invalid api_key"}],
                                     status=403)
        if not form.get("service_code") or not form.get("description"):
            return web.json_response([{"code": 400, "description": "missing field"}], status=400)
        record, _ = self._accept(key or form.get("attribute[paht_code]", ""), "open311", form)
        return web.json_response([{"service_request_id": record.central_id,
                                   "service_notice": "Đã tiếp nhận"}])

    async def open311_get(self, request: web.Request) -> web.StreamResponse:
        """GET /open311/requests/{id}.json."""
        self.requests.append({"path": request.path, "query": dict(request.query)})
        bad = await self._misbehave(request)
        if bad is not None:
            return bad
        try:
            record = self.by_id(request.match_info["id"])
        except StopIteration:
            return web.json_response([{"code": 404, "description": "not found"}], status=404)
        return web.json_response([{
            "service_request_id": record.central_id, "status": record.status,
            "status_notes": record.status_notes, "agency_responsible": record.agency,
            "service_code": record.data.get("service_code"),
            "requested_datetime": "2026-11-23T08:00:00+07:00",
            "updated_datetime": record.updated,
        }])

    async def open311_rating(self, request: web.Request) -> web.StreamResponse:
        """POST /open311/ratings.json (not part of GeoReport v2)."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        key = request.headers.get("Idempotency-Key", "")
        self.requests.append({"path": request.path, "form": form, "key": key})
        bad = await self._misbehave(request)
        if bad is not None:
            return bad
        self._accept(key, "rating", form)
        return web.json_response({"ok": True})

    def set_status(self, central_id: str, status: str, notes: str | None = None,
                   agency: str | None = None) -> None:
        """What an agency did, as the next poll will see it."""
        record = self.by_id(central_id)
        record.status, record.status_notes, record.agency = status, notes, agency
        record.updated = "2026-11-24T09:30:00+07:00"

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        """POST /webhook."""
        raw = await request.read()
        key = request.headers.get("Idempotency-Key", "")
        signature = request.headers.get("X-PAHT-Signature", "")
        self.requests.append({"path": request.path, "body": raw, "key": key,
                              "signature": signature})
        bad = await self._misbehave(request)
        if bad is not None:
            return bad
        expected = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            return web.json_response({"error": "bad signature"}, status=401)
        data = json.loads(raw)
        record, new = self._accept(key, "webhook", data)
        return web.json_response({"id": record.central_id, "duplicate": not new},
                                 status=201 if new else 200)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post("/open311/requests.json", self.open311_create)
        app.router.add_get("/open311/requests/{id}.json", self.open311_get)
        app.router.add_post("/open311/ratings.json", self.open311_rating)
        app.router.add_post("/webhook", self.webhook)
        return app


# --- helpers the forwarding tests share ------------------------------------------------------

CENTRAL_TABLES = ("central_report", "central_rating", "central_status_event")


CORE_TABLES = ("classification", "operator_action", "report_history", "outbox",
               "inbound_event", "conversation", "identity", "report", "citizen", "operator",
               "tracking_counter", "credential")


def reset_pg(url: str) -> None:
    """Empty every table of a PostgreSQL test database (for tests taking `pg_url` directly)."""
    clean_central_tables(url, CORE_TABLES)


def clean_central_tables(url: str, extra: tuple[str, ...] = ()) -> None:
    """Empty the forwarding tables on PostgreSQL (tests/conftest.py truncates only the core)."""
    if not url.startswith("postgresql"):
        return
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with psycopg.connect(host=u.host or "127.0.0.1", port=u.port or 5432,
                         user=u.username or "postgres", dbname=u.database,
                         autocommit=True) as conn:
        tables = ", ".join((*CENTRAL_TABLES, *extra))
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def make_services(settings: Any) -> Any:
    """Services on `settings` without the app (no channels, no classifier)."""
    from gateway.domain.texts import Texts
    from gateway.ops.metrics import Metrics
    from gateway.services import Services
    from store.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    services = Services(settings=settings, sessions=session_factory(engine),
                        texts=Texts.load(settings.config_dir), metrics=Metrics())
    services.engine = engine  # type: ignore[attr-defined]  (disposed by the test fixture)
    return services


async def seed_report(services: Any, n: int, *, channel: str = "telegram",
                      sender: str | None = None, confirm: bool = True,
                      consent: bool = False, phone: str | None = None,
                      **fields: Any) -> Any:
    """A citizen with an identity and a submitted report PA-2611-00000n, confirmed if asked."""
    from gateway.domain import reports
    from store.models import Citizen, Identity, Report, utcnow

    sender = sender or f"{channel}:{1000 + n}"
    async with services.sessions() as session:
        citizen = Citizen(display_name="Nguyễn Văn An", phone=phone,
                          consent_share_identity=consent)
        session.add(citizen)
        await session.flush()
        session.add(Identity(urn=sender, channel=channel, citizen_id=citizen.id,
                             last_inbound_at=utcnow()))
        values: dict[str, Any] = {
            "code": f"PA-2611-{n:06d}", "channel": channel, "citizen_id": citizen.id,
            "sender": sender, "text": f"Đèn đường hỏng số {n} đường Hùng Vương",
            "sector": "ha_tang_do_thi", "agency": "Sở Xây dựng", "status": "submitted",
            "submitted_at": utcnow(), "lat": 16.4637, "lon": 107.5909,
        }
        values.update(fields)
        report = Report(**values)
        session.add(report)
        await session.flush()
        if confirm:
            await reports.confirm(session, services, report)
        await session.commit()
        return report


async def make_due(services: Any) -> None:
    """Skip the back-off: every pending outbox row is due now (instead of waiting)."""
    import sqlalchemy as sa

    from store.models import Outbox, utcnow

    async with services.sessions() as session:
        t = Outbox.__table__
        await session.exec(sa.update(t).where(t.c.status == "pending")
                           .values(next_attempt_at=utcnow()))
        await session.commit()
