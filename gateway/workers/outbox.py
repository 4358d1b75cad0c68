"""Delivers queued messages to citizens through their channel (the `reply`/`notify` rows).

Provider errors carry their retry policy (`SendError.retryable`, `retry_after`). A closed
reply window (Messenger 24 h, Zalo -230) falls back to SMS when the citizen's phone is known,
otherwise the message is held until the citizen writes again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import SendError
from channels.codec import outbound_from_dict, outbound_to_dict
from gateway.domain.reports import last_inbound_at
from gateway.ops.loops import Backoff, run_until
from gateway.ops.privacy import mask_urn
from gateway.services import Services
from store.models import Outbox, utcnow
from store.repos import citizens as citizens_repo
from store.repos import outbox as outbox_repo

log = logging.getLogger("paht.outbox")
MESSAGE_KINDS = ("reply", "notify")
SEND_TIMEOUT = 45.0  # seconds for one delivery, split messages included


def backoff(attempts: int, base: float = 2.0, cap: float = 3600.0) -> float:
    """Exponential back-off with full jitter, in seconds."""
    return random.uniform(0, min(cap, base * (2 ** max(0, attempts - 1)))) + 1.0


class OutboxSender:
    """Sends pending citizen messages as soon as they are committed."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self.lease = timedelta(seconds=60)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set, woken by new rows or every few seconds."""
        await run_until(stop, self.run_once, self.s.outbox_wake, 2.0,
                        Backoff(log, "outbox loop"))

    async def run_once(self) -> int:
        """Deliver one batch; returns how many rows were attempted."""
        async with self.s.sessions() as session:
            rows = await outbox_repo.claim_outbox(session, MESSAGE_KINDS, 20, self.lease)
        for row in rows:
            await self._deliver(row)
        return len(rows)

    async def _deliver(self, row: Outbox) -> None:
        msg = outbound_from_dict(row.payload)
        channel = self.s.channels.get(msg.channel)
        async with self.s.sessions() as session:
            current = await session.get(Outbox, row.id)
            if current is None or current.status != "pending":
                return
            # The reply window counts from the citizen's latest message, which may be newer
            # than when this row was queued (a held message released by a new message).
            if self.s.channels.traits(msg.channel).reply_window is not None:
                msg = replace(msg, last_inbound_at=await last_inbound_at(session,
                                                                         msg.recipient))
            if channel is None:
                current.status, current.last_error = "dead", f"channel {msg.channel} disabled"
                session.add(current)
                await session.commit()
                return
            try:
                # A provider that hangs must not hold this sender (or the row) for ever.
                result = await asyncio.wait_for(channel.send(msg), timeout=SEND_TIMEOUT)
            except TimeoutError:
                await self._failed(session, current, SendError("send timed out", retryable=True))
                await session.commit()
                return
            except SendError as exc:
                await self._failed(session, current, exc)
                await session.commit()
                return
            except Exception as exc:  # unknown failure: retry with back-off
                await self._failed(session, current, SendError(str(exc), retryable=True))
                await session.commit()
                return
            current.status = "sent"
            current.sent_at = utcnow()
            current.provider_id = result.provider_id
            current.last_error = None
            session.add(current)
            await session.commit()
        self.s.metrics.inc("paht_outbox_sent_total", channel=msg.channel)

    async def _failed(self, session: AsyncSession, row: Outbox, exc: SendError) -> None:
        self.s.metrics.inc("paht_outbox_failed_total", channel=row.channel or "")
        row.last_error = str(exc)[:1000]
        log.warning(
            "send failed",
            extra={"channel": row.channel, "recipient": mask_urn(row.recipient),
                   "retryable": exc.retryable, "why": str(exc)[:200]},
        )
        if exc.window_closed:
            row.status = "held"
            if await self._fallback_sms(session, row):
                row.status = "fallback"
        elif exc.retryable and row.attempts < self.s.settings.outbox_max_attempts:
            delay = exc.retry_after if exc.retry_after else backoff(row.attempts)
            row.status = "pending"
            row.next_attempt_at = utcnow() + timedelta(seconds=delay)
        else:
            row.status = "dead"
        session.add(row)

    async def _fallback_sms(self, session: AsyncSession, row: Outbox) -> bool:
        if "sms" not in self.s.channels or row.recipient is None:
            return False
        citizen = await citizens_repo.citizen_of(session, row.recipient)
        if citizen is None or not citizen.phone:
            return False
        payload = outbound_to_dict(outbound_from_dict(row.payload))
        payload.update(channel="sms", recipient=f"tel:{citizen.phone}", buttons=[])
        session.add(Outbox(kind=row.kind, channel="sms", recipient=payload["recipient"],
                           report_id=row.report_id, payload=payload,
                           dedup_key=f"sms-fallback:{row.id}"))
        self.s.outbox_wake.set()
        return True


async def release_held(services: Services, session: AsyncSession, urn: str) -> int:
    """The citizen wrote again: messages held for a closed window can go now."""
    rows = await outbox_repo.held_for(session, urn)
    for row in rows:
        row.status = "pending"
        row.next_attempt_at = utcnow()
        session.add(row)
    if rows:
        services.outbox_wake.set()
    return len(rows)

