"""The Forwarder: delivers `forward` outbox rows to the central system (store/forward.py).

`gateway.domain.lifecycle.Lifecycle.confirm` writes a row `forward:<code>` in the confirming
transaction (the transactional outbox); a rating writes `rating:<code>`. The scheduler job
`deliver_forwards` claims due rows (`FOR UPDATE SKIP LOCKED` + a lease on PostgreSQL, so
several processes never take the same row), builds the payload — the citizen as a pseudonym
unless they consented to share their identity — and hands it to the sink outside any
transaction. Failures retry with
exponential back-off and full jitter; after `forward_max_attempts` the row is parked as
`dead` (see `store.forward.dead_letters`). A crash between delivery and commit re-delivers
after the lease: the central side deduplicates on the idempotency key (the tracking code).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain.lifecycle import queue_rating
from gateway.ops.privacy import pseudonym
from gateway.services import Services
from gateway.web.media_access import signed_media_url
from gateway.workers.outbox import backoff
from store.forward import Delivered, DeliveryError, Sink
from store.models import Citizen, Outbox, Report, utcnow
from store.repos import outbox as outbox_repo
from store.repos import reports as reports_repo
from store.sinks import build_sink

log = logging.getLogger("paht.forwarding")


def make_sink(services: Services, http: Any = None) -> Sink:
    """The sink chosen by PAHT_FORWARD_SINK (the database sink defaults to our database)."""
    s = services.settings
    return build_sink(
        s.forward_sink, url=s.forward_url, api_key=s.forward_api_key, secret=s.forward_secret,
        database_url=s.forward_database_url or s.database_url,
        timeout=s.forward_timeout_seconds, http=http,
    )


def _media_urls(services: Services, report: Report) -> list[str]:
    base = services.settings.public_base_url.rstrip("/")
    urls: list[str] = []
    for att in report.attachments:
        if att.get("path"):
            # The centre gets a signed, expiring link: /media/ is not public.
            urls.append(signed_media_url(services.settings, att["path"], base))
        elif str(att.get("url", "")).startswith(("http://", "https://")):
            urls.append(str(att["url"]))
    return urls


def report_payload(services: Services, report: Report, citizen: Citizen | None,
                   original: Report | None = None) -> dict[str, Any]:
    """What the central system receives for a confirmed report (plain, JSON-ready): with
    `urgent`, the `agency` and, for a merged duplicate, `duplicate_of` (the original's code)."""
    person: dict[str, Any] = {"pseudonym": pseudonym(report.citizen_id,
                                                     services.settings.session_secret)}
    if citizen is not None and citizen.consent_share_identity:
        person.update(name=citizen.display_name, phone=citizen.phone)
    text = "\n".join(p for p in (report.text, report.transcript) if p)
    return {
        "type": "report", "code": report.code, "sector": report.sector, "agency": report.agency,
        "description": text, "lat": report.lat, "lon": report.lon, "address": report.address,
        "media": _media_urls(services, report), "channel": report.channel,
        "urgent": report.urgent, "citizen": person,
        "submitted_at": report.submitted_at.isoformat() if report.submitted_at else None,
        "duplicate_of": original.code if original is not None else None,
    }


def link_payload(services: Services, report: Report, citizen: Citizen | None,
                 original: Report | None) -> dict[str, Any]:
    """The report a duplicate became, with the link to its original (`type: "link"`)."""
    return {**report_payload(services, report, citizen, original), "type": "link"}


def rating_payload(report: Report) -> dict[str, Any]:
    """What the central system receives for the citizen's rating."""
    return {"type": "rating", "code": report.code, "rating": report.rating,
            "central_ref": report.central_ref}


async def queue_new_ratings(services: Services, limit: int = 100) -> int:
    """Queue ratings stored by the dialog that have no delivery row yet (a sweep job)."""
    async with services.sessions() as session:
        found = await reports_repo.rated_without_delivery(session, limit)
        queued = sum([await queue_rating(session, r) for r in found])
        await session.commit()
    return queued


class Forwarder:
    """Claims due forward rows and delivers them through one sink."""

    def __init__(self, services: Services, sink: Sink | None = None, batch: int = 20) -> None:
        self.s = services
        self.sink = sink or make_sink(services)
        self.batch = batch
        self.lifecycle = services.lifecycle
        # The lease outlives one delivery attempt, so no other process takes a row in flight.
        self.lease = timedelta(seconds=max(60.0, 3 * services.settings.forward_timeout_seconds))

    async def close(self) -> None:
        """Release the sink's connections."""
        await self.sink.close()

    async def run_once(self) -> int:
        """Deliver one batch of due rows; returns how many were attempted."""
        async with self.s.sessions() as session:
            rows = await outbox_repo.claim_outbox(session, ("forward",), self.batch, self.lease)
        for row in rows:
            await self._deliver(row)
        return len(rows)

    async def run_until_idle(self, rounds: int = 50) -> int:
        """Deliver batches until none is due (the scheduler job)."""
        total = 0
        for _ in range(rounds):
            done = await self.run_once()
            total += done
            if done < self.batch:
                break
        return total

    async def _deliver(self, row: Outbox) -> None:
        async with self.s.sessions() as session:
            report = await session.get(Report, row.report_id) if row.report_id else None
            if report is None or report.code is None:
                await self._park(session, row, "report missing")
                return
            kind = row.payload.get("type")
            original = (await session.get(Report, report.duplicate_of)
                        if report.duplicate_of else None)
            if kind == "rating":
                payload = rating_payload(report)
            elif kind == "link":
                if original is None:
                    await self._park(session, row, "original missing")
                    return
                payload = link_payload(self.s, report,
                                       await session.get(Citizen, report.citizen_id), original)
            else:
                payload = report_payload(self.s, report, await session.get(Citizen,
                                                                            report.citizen_id),
                                         original)
        try:  # no transaction is open while the central system takes its time
            result = await self.sink.deliver(payload)
        except DeliveryError as exc:
            await self._failed(row, exc)
            return
        except Exception as exc:  # a sink bug or an unexpected answer: retry, keep the trace
            log.exception("forward crashed", extra={"code": report.code})
            await self._failed(row, DeliveryError(f"{type(exc).__name__}: {exc}"))
            return
        await self._done(row, payload, result)

    async def _done(self, row: Outbox, payload: dict[str, Any], result: Delivered) -> None:
        async with self.s.sessions() as session:
            current = await session.get(Outbox, row.id)
            if current is None or current.status != "pending":
                return  # another process finished it after our lease ran out
            current.status, current.sent_at, current.last_error = "sent", utcnow(), None
            current.provider_id = (result.central_ref or "")[:128] or None
            session.add(current)
            if payload["type"] == "report":
                report = await session.get(Report, row.report_id)
                if report is not None:
                    await self.lifecycle.mark_forwarded(session, report, result.central_ref)
            await session.commit()
        self.s.metrics.inc("paht_forward_sent_total", sink=self.sink.name)
        log.info("forwarded", extra={"code": payload["code"], "type": payload["type"],
                                     "sink": self.sink.name, "duplicate": result.duplicate})

    async def _failed(self, row: Outbox, exc: DeliveryError) -> None:
        self.s.metrics.inc("paht_forward_failed_total", sink=self.sink.name)
        async with self.s.sessions() as session:
            current = await session.get(Outbox, row.id)
            if current is None or current.status != "pending":
                return
            current.last_error = str(exc)[:1000]
            if exc.retryable and current.attempts < self.s.settings.forward_max_attempts:
                current.next_attempt_at = utcnow() + timedelta(seconds=backoff(current.attempts))
                session.add(current)
                await session.commit()
                log.warning("forward failed, will retry",
                            extra={"outbox_id": current.id, "attempts": current.attempts,
                                   "why": str(exc)[:200]})
                return
            await self._park(session, current, str(exc))

    async def _park(self, session: AsyncSession, row: Outbox, why: str) -> None:
        current = await session.get(Outbox, row.id)
        if current is None:
            return
        current.status, current.last_error = "dead", why[:1000]
        session.add(current)
        await session.commit()
        self.s.metrics.inc("paht_forward_dead_total", sink=self.sink.name)
        log.error("forward parked as dead letter",
                  extra={"outbox_id": current.id, "attempts": current.attempts, "why": why[:200]})
