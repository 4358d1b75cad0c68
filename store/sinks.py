"""The three forwarding sinks (see store/forward.py for the contract).

- `DatabaseSink`: central tables in our own database (or PAHT_FORWARD_DATABASE_URL), the
  embedded default; insert-or-ignore on the tracking code (a `link` sets `duplicate_of`).
- `Open311Sink`: GeoReport v2 `POST {url}/requests.json` (form-encoded, `api_key`), and
  `GET {url}/requests/{id}.json` for polling — https://wiki.open311.org/GeoReport_v2/.
  GeoReport v2 has no idempotency key of its own: we send the `Idempotency-Key` header and
  `attribute[paht_code]`, and no rating call: ratings go to the non-standard
  `POST {url}/ratings.json` (a server without it answers 404 and the row is parked).
  `urgent`, the agency and the duplicate link travel as attributes (`attribute[paht_urgent]`,
  `attribute[paht_agency]`, `attribute[paht_duplicate_of]`); a `link` is posted as a request
  of its own whose `attribute[paht_duplicate_of]` names the original.
- `WebhookSink`: JSON POST signed `X-PAHT-Signature: sha256=<hmac of the raw body>`, with
  `Idempotency-Key`; 409 means "already have it".
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import aiohttp
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from store.central_models import CENTRAL_TABLES, CentralRating, CentralReport
from store.db import create_engine, is_sqlite
from store.forward import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    Delivered,
    DeliveryError,
    Sink,
    idempotency_key,
    sign,
)
from store.models import table_of

RETRYABLE_STATUS = {408, 425, 429}


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class DatabaseSink:
    """Central tables in a database we can reach directly."""

    name = "database"

    def __init__(self, url: str) -> None:
        if not url:
            raise ValueError("the database sink needs a database URL")
        self.url = url
        self.engine = create_engine(url, pool_size=2)
        self._ready = False

    async def _prepare(self) -> None:
        if not self._ready:
            # Our own database has them from migration 0002; a separate central database
            # gets them here (checkfirst: creating twice is harmless).
            async with self.engine.begin() as conn:
                await conn.run_sync(
                    lambda c: CentralReport.metadata.create_all(c, tables=list(CENTRAL_TABLES))
                )
            self._ready = True

    async def deliver(self, payload: dict[str, Any]) -> Delivered:
        """Insert the report (or rating) unless the tracking code is already there."""
        try:
            await self._prepare()
            async with self.engine.begin() as conn:
                return await self._insert(conn, payload)
        except sa.exc.DBAPIError as exc:
            raise DeliveryError(f"central database: {type(exc.orig).__name__}",
                                retryable=True) from exc
        except (TimeoutError, OSError) as exc:
            raise DeliveryError(f"central database unreachable: {exc}", retryable=True) from exc

    async def _insert(self, conn: Any, payload: dict[str, Any]) -> Delivered:
        insert = sqlite.insert if is_sqlite(self.url) else postgresql.insert
        code = str(payload["code"])
        if payload.get("type", "report") == "rating":
            table = table_of(CentralRating)
            values: dict[str, Any] = {"code": code, "rating": int(payload["rating"])}
        else:
            table = table_of(CentralReport)
            values = {
                "code": code, "sector": payload.get("sector"), "agency": payload.get("agency"),
                "description": payload.get("description") or "", "lat": payload.get("lat"),
                "lon": payload.get("lon"), "address": payload.get("address"),
                "media": list(payload.get("media") or []),
                "citizen": dict(payload.get("citizen") or {}),
                "channel": payload.get("channel"), "urgent": bool(payload.get("urgent")),
                "submitted_at": _parse_time(payload.get("submitted_at")),
                "duplicate_of": payload.get("duplicate_of"),
            }
        from store.models import utcnow

        values["received_at"] = utcnow()
        base = insert(table).values(**values)
        if payload.get("type") == "link":
            # The duplicate may be there already (forwarded before it was merged): link it.
            stmt = base.on_conflict_do_update(
                index_elements=["code"], set_={"duplicate_of": values["duplicate_of"]}
            ).returning(table.c.id)
        else:
            stmt = base.on_conflict_do_nothing(index_elements=["code"]).returning(table.c.id)
        new_id = (await conn.execute(stmt)).scalar_one_or_none()
        if new_id is not None:
            return Delivered(central_ref=f"DB-{new_id}")
        old = (await conn.execute(sa.select(table.c.id).where(table.c.code == code))).scalar_one()
        return Delivered(central_ref=f"DB-{old}", duplicate=True)

    async def close(self) -> None:
        """Dispose of the engine."""
        await self.engine.dispose()


class _HttpSink:
    """Shared HTTP plumbing: our session or the app's, a timeout, error classification."""

    name = "http"

    def __init__(self, url: str, *, timeout: float, http: aiohttp.ClientSession | None) -> None:
        if not url:
            raise ValueError(f"the {self.name} sink needs PAHT_FORWARD_URL")
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._own = http is None
        self._http = http

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def _request(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        try:
            async with self.http.request(method, url, timeout=self.timeout, **kwargs) as resp:
                return resp.status, await resp.read()
        except TimeoutError as exc:
            raise DeliveryError(f"{self.name}: timed out", retryable=True) from exc
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}", retryable=True) from exc

    def _check(self, status: int, body: bytes) -> None:
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in RETRYABLE_STATUS
        text = body[:300].decode("utf-8", "replace")
        raise DeliveryError(f"{self.name}: HTTP {status} {text}", retryable=retryable,
                            status=status)

    async def close(self) -> None:
        """Close the HTTP session if this sink opened it."""
        if self._own and self._http is not None:
            await self._http.close()


class Open311Sink(_HttpSink):
    """A GeoReport v2 endpoint of the central system."""

    name = "open311"

    def __init__(self, url: str, *, api_key: str = "", timeout: float = 10.0,
                 http: aiohttp.ClientSession | None = None) -> None:
        super().__init__(url, timeout=timeout, http=http)
        self.api_key = api_key

    def _form(self, payload: dict[str, Any]) -> dict[str, str]:
        form = {"api_key": self.api_key, "service_code": payload.get("sector") or "khac",
                "description": (payload.get("description") or "")[:4000],
                "attribute[paht_code]": str(payload["code"])}
        if payload.get("lat") is not None and payload.get("lon") is not None:
            form["lat"], form["long"] = str(payload["lat"]), str(payload["lon"])
        else:  # GeoReport v2 wants a location: lat/long or address_string
            form["address_string"] = payload.get("address") or "không rõ"
        if payload.get("media"):
            form["media_url"] = str(payload["media"][0])
        citizen = payload.get("citizen") or {}
        if citizen.get("pseudonym"):
            form["account_id"] = citizen["pseudonym"]
        # GeoReport v2 has no urgency, agency or duplicate field: attributes carry them.
        form["attribute[paht_urgent]"] = "true" if payload.get("urgent") else "false"
        if payload.get("agency"):
            form["attribute[paht_agency]"] = str(payload["agency"])
        if payload.get("duplicate_of"):
            form["attribute[paht_duplicate_of]"] = str(payload["duplicate_of"])
        for ours, theirs in (("name", "first_name"), ("phone", "phone")):
            if citizen.get(ours):
                form[theirs] = str(citizen[ours])
        return form

    async def deliver(self, payload: dict[str, Any]) -> Delivered:
        """POST requests.json (report) or ratings.json (rating)."""
        headers = {IDEMPOTENCY_HEADER: idempotency_key(payload)}
        if payload.get("type", "report") == "rating":
            form = {"api_key": self.api_key, "service_request_id": payload.get("central_ref") or "",
                    "rating": str(payload["rating"]), "attribute[paht_code]": str(payload["code"])}
            status, body = await self._request("POST", f"{self.url}/ratings.json", data=form,
                                               headers=headers)
            self._check(status, body)
            return Delivered(central_ref=payload.get("central_ref"))
        status, body = await self._request("POST", f"{self.url}/requests.json",
                                           data=self._form(payload), headers=headers)
        self._check(status, body)
        try:
            item = json.loads(body)[0]
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise DeliveryError("open311: unreadable answer", retryable=True) from exc
        # A server may answer a token first and the id later (GET tokens/{token}.json).
        ref = item.get("service_request_id") or (f"token:{item['token']}" if item.get("token")
                                                 else None)
        return Delivered(central_ref=str(ref) if ref else None)

    async def fetch_status(self, central_ref: str) -> dict[str, Any] | None:
        """GET requests/{id}.json: the service request as the central system sees it."""
        if central_ref.startswith("token:"):
            return None
        status, body = await self._request(
            "GET", f"{self.url}/requests/{central_ref}.json", params={"api_key": self.api_key})
        if status == 404:
            return None
        self._check(status, body)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise DeliveryError("open311: unreadable answer", retryable=True) from exc
        if isinstance(data, list):
            data = data[0] if data else None
        return data if isinstance(data, dict) else None


class WebhookSink(_HttpSink):
    """A JSON endpoint of the central system, signed with the shared secret."""

    name = "webhook"

    def __init__(self, url: str, *, secret: str = "", timeout: float = 10.0,
                 http: aiohttp.ClientSession | None = None) -> None:
        super().__init__(url, timeout=timeout, http=http)
        if not secret:
            raise ValueError("the webhook sink needs PAHT_FORWARD_SECRET")
        self.secret = secret

    async def deliver(self, payload: dict[str, Any]) -> Delivered:
        """POST the payload; 2xx (optionally `{"id": ...}`) or 409 (already have it)."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json; charset=utf-8",
                   SIGNATURE_HEADER: sign(body, self.secret),
                   IDEMPOTENCY_HEADER: idempotency_key(payload)}
        status, answer = await self._request("POST", self.url, data=body, headers=headers)
        if status == 409:
            return Delivered(central_ref=None, duplicate=True)
        self._check(status, answer)
        ref = None
        try:
            data = json.loads(answer) if answer else {}
            if isinstance(data, dict):
                ref = data.get("central_ref") or data.get("id")
        except ValueError:
            pass
        return Delivered(central_ref=str(ref) if ref is not None else None)


def build_sink(kind: str, *, url: str = "", api_key: str = "", secret: str = "",
               database_url: str = "", timeout: float = 10.0, http: Any = None) -> Sink:
    """The sink named `kind` (database | open311 | webhook) from plain configuration."""
    if kind == "database":
        return DatabaseSink(database_url)
    if kind == "open311":
        return Open311Sink(url, api_key=api_key, timeout=timeout, http=http)
    if kind == "webhook":
        return WebhookSink(url, secret=secret, timeout=timeout, http=http)
    raise ValueError(f"unknown forward sink {kind!r}")
