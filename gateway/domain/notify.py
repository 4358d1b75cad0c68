"""Messages to citizens through the outbox: status notices, the rating question, replies.

`gateway.domain.lifecycle` calls `Notifier.tell` when a report moves (texts `notify.*` in
config/messages.vi.toml). A notice goes to the reporter on the channel they used and to the
subscribers of the report — the citizens of merged duplicates, kept as flags
`subscriber:<citizen_id>` on the original and each reached on their most recently used chat
identity. After resolution the reporter is asked to rate the handling 1–5. The OutboxSender
delivers these rows: when a channel's reply window has closed it falls back to SMS if the
phone is known, else holds them until the citizen writes.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import Button, OutboundMessage
from channels.codec import outbound_to_dict
from channels.registry import CHANNELS as MESSAGING
from gateway.domain.texts import Texts
from store.models import Conversation, Identity, Outbox, Report, utcnow
from store.repos import conversations as conversations_repo
from store.repos import reports as repo

log = logging.getLogger("paht.notify")

DEFAULT_AGENCY = "cơ quan chức năng"
SUBSCRIBER = "subscriber"


def subscriber_flag(citizen_id: int) -> str:
    """How a merged report's citizen is subscribed to the original's updates."""
    return f"{SUBSCRIBER}:{citizen_id}"


def subscriber_ids(report: Report) -> list[int]:
    """Citizens who asked to follow this report (merged duplicates), from its flags."""
    ids: list[int] = []
    for flag in report.flags:
        head, _, value = flag.partition(":")
        if head == SUBSCRIBER and value.isdigit() and int(value) != report.citizen_id:
            ids.append(int(value))
    return sorted(set(ids))


async def latest_identity(session: AsyncSession, citizen_id: int) -> Identity | None:
    """The chat identity a citizen used most recently (never-used ones last)."""
    return await repo.latest_identity(session, citizen_id, list(MESSAGING))


class Notifier:
    """Queues outbox rows to citizens; the outbox sender delivers them after commit."""

    def __init__(self, texts: Texts, outbox_wake: asyncio.Event) -> None:
        self.texts = texts
        self.outbox_wake = outbox_wake

    async def queue(
        self,
        session: AsyncSession,
        *,
        channel: str,
        recipient: str,
        text: str,
        buttons: tuple[Button, ...] = (),
        report_id: int | None = None,
        dedup_key: str | None = None,
        kind: str = "reply",
        inbound_at: datetime | None = None,
        check_duplicate: bool = True,
    ) -> None:
        """Queue one message; a `dedup_key` already queued is a no-op (unless not checked).

        `inbound_at` is when the citizen last wrote, when the caller knows it (a reply to the
        message being processed); otherwise it is looked up.
        """
        if dedup_key is not None and check_duplicate and await repo.outbox_key_taken(
                session, dedup_key):
            return
        msg = OutboundMessage(
            channel=channel, recipient=recipient, text=text, buttons=buttons,
            last_inbound_at=inbound_at or await repo.last_inbound_at(session, recipient),
        )
        session.add(Outbox(kind=kind, channel=channel, recipient=recipient, report_id=report_id,
                           payload=outbound_to_dict(msg), dedup_key=dedup_key))
        self.outbox_wake.set()

    async def tell(
        self, session: AsyncSession, report: Report, key: str, note: str | None = None,
        **values: Any,
    ) -> int:
        """Queue the `notify.<key>` text to the reporter and every subscriber; returns how many."""
        text = self.texts.get(f"notify.{key}", code=report.code,
                              agency=report.agency or DEFAULT_AGENCY, note=note or "", **values)
        if not note and text.rstrip().endswith(":"):
            # "…đã được xử lý: " without a note reads "…đã được xử lý."
            text = text.rstrip().rstrip(":").rstrip() + "."
        targets: list[tuple[str, str]] = []
        if report.channel in MESSAGING:
            targets.append((report.channel, report.sender))
        # A report filed through Open311 or the API has no chat to answer in: use the citizen's
        # latest channel, if they ever wrote to us on one.
        ids = subscriber_ids(report) if targets else [report.citizen_id, *subscriber_ids(report)]
        for citizen_id in ids:
            ident = await latest_identity(session, citizen_id)
            if ident is not None:
                targets.append((ident.channel, ident.urn))
        seen: set[str] = set()
        for channel, urn in targets:
            if urn in seen:
                continue
            seen.add(urn)
            await self.queue(
                session, channel=channel, recipient=urn, text=text, kind="notify",
                report_id=report.id, dedup_key=f"notify:{report.code}:{key}:{urn}"[:128],
            )
        return len(seen)

    async def ask_rating(self, session: AsyncSession, report: Report) -> bool:
        """Put the reporter's conversation in the rating state and send the 1–5 question.

        A citizen who is composing a new report keeps their draft: no question then (the
        answer would land in the draft), and the report simply stays unrated.
        """
        if report.channel not in MESSAGING:
            return False  # filed through Open311 or the API: no conversation to rate in
        conv = await conversations_repo.conversation_of(session, report.sender)
        if conv is None:
            conv = Conversation(sender=report.sender, channel=report.channel,
                                citizen_id=report.citizen_id)
        elif conv.report_id is not None and conv.state != "rating":
            log.info("rating not asked: a draft is open", extra={"code": report.code})
            return False
        conv.state, conv.report_id, conv.expires_at = "rating", report.id, None
        conv.last_activity_at = utcnow()
        session.add(conv)
        buttons = tuple(Button(str(n), f"rate:{n}") for n in range(1, 6))
        await self.queue(
            session, channel=report.channel, recipient=report.sender,
            text=self.texts.get("notify.rate", code=report.code), buttons=buttons,
            report_id=report.id, dedup_key=f"rate:{report.code}", kind="notify",
        )
        return True
