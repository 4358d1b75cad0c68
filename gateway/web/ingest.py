"""Durable ingest: persist parsed messages in one transaction before anyone acknowledges them.

Used by the webhook route and by anything else that receives messages (Telegram long polling,
the Twilio media-stream WebSocket). A duplicate (same channel and provider id) is a no-op.
Concurrent requests share transactions (gateway/web/group_commit.py): each request's `accept`
returns only after the commit holding its messages, so the ack still means durable.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import InboundMessage
from channels.codec import message_to_dict
from gateway.ops.metrics import Metrics
from gateway.ops.privacy import mask_urn
from gateway.web.group_commit import GroupCommitter
from store.write_gate import WriteGate

log = logging.getLogger("paht.ingest")


@dataclass(frozen=True, slots=True)
class IngestResult:
    """How many messages of a request were new and how many were redeliveries."""

    new_ids: tuple[int, ...]
    duplicates: int


class Ingestor:
    """Persists inbound messages and wakes the worker."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], metrics: Metrics, wake: object = None,
        gate: WriteGate | None = None,
    ) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.wake = wake  # an asyncio.Event the worker waits on
        self.committer = GroupCommitter(sessions, gate=gate)
        self.failing_since: float | None = None  # monotonic time of the first failed write

    def write_failing(self, window_s: float = 30.0) -> bool:
        """True while the latest writes failed (within `window_s`): /readyz reports it.

        A read-only or full disk still answers SELECT 1; this is what tells the load balancer.
        After `window_s` without traffic the flag lapses so the node gets a new chance.
        """
        since = self.failing_since
        return since is not None and time.monotonic() - since < window_s

    async def accept(self, messages: list[InboundMessage]) -> IngestResult:
        """Store `messages` durably (all in one transaction); raises if the database fails."""
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
        try:
            ids = await self.committer.insert(rows)
        except Exception:
            if self.failing_since is None or not self.write_failing():
                self.failing_since = time.monotonic()
            raise
        self.failing_since = None
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
