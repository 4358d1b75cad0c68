"""Durable ingest: persist parsed messages in one transaction before anyone acknowledges them.

Used by the webhook route and by anything else that receives messages (Telegram long polling,
the Twilio media-stream WebSocket). A duplicate (same channel and provider id) is a no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import InboundMessage
from gateway.codec import message_to_dict
from gateway.metrics import Metrics
from gateway.privacy import mask_urn
from store import repo

log = logging.getLogger("paht.ingest")


@dataclass(frozen=True, slots=True)
class IngestResult:
    """How many messages of a request were new and how many were redeliveries."""

    new_ids: tuple[int, ...]
    duplicates: int


class Ingestor:
    """Persists inbound messages and wakes the worker."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], metrics: Metrics, wake: object = None
    ) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.wake = wake  # an asyncio.Event the worker waits on

    async def accept(self, messages: list[InboundMessage]) -> IngestResult:
        """Store `messages` durably (one transaction); raises if the database fails."""
        if not messages:
            return IngestResult((), 0)
        rows = [
            {
                "channel": m.channel,
                "external_id": m.external_id,
                "sender": m.sender,
                "received_at": m.received_at,
                "message": message_to_dict(m),
            }
            for m in messages
        ]
        async with self.sessions() as session:
            ids = await repo.insert_events(session, rows)
            await session.commit()
        new_ids = tuple(i for i in ids if i is not None)
        duplicates = len(ids) - len(new_ids)
        for m, new_id in zip(messages, ids, strict=True):
            if new_id is None:
                self.metrics.inc("paht_messages_duplicate_total", channel=m.channel)
                log.info(
                    "duplicate delivery ignored",
                    extra={"channel": m.channel, "external_id": m.external_id},
                )
            else:
                self.metrics.inc("paht_messages_accepted_total", channel=m.channel)
                log.info(
                    "message accepted",
                    extra={"channel": m.channel, "event_id": new_id, "sender": mask_urn(m.sender)},
                )
        if new_ids and self.wake is not None:
            self.wake.set()  # type: ignore[attr-defined]
        return IngestResult(new_ids, duplicates)
