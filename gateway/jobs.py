"""Scheduled work (APScheduler 3.x `AsyncIOScheduler`): close expired drafts, refresh tokens.

Later jobs (forwarding, reminders, weekly report) register here too.
"""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlmodel import col, select

from gateway import reports
from gateway.dialog import Dialog
from gateway.services import Services
from store.models import Conversation, utcnow

log = logging.getLogger("paht.jobs")


async def close_expired_drafts(services: Services) -> int:
    """Submit drafts whose conversation window has closed; tell the citizen the code."""
    dialog = Dialog(services)
    closed = 0
    async with services.sessions() as session:
        stmt = (
            select(Conversation)
            .where(col(Conversation.expires_at) < utcnow(),
                   col(Conversation.report_id).is_not(None))
            .limit(100)
        )
        for conv in (await session.exec(stmt)).all():
            outcome = await dialog.close_expired(session, conv)
            for n, reply in enumerate(outcome.replies):
                report = outcome.report
                await reports.queue_message(
                    session, services, channel=conv.channel, recipient=conv.sender,
                    text=reply.text, report_id=report.id if report else None,
                    dedup_key=f"expired:{report.id if report else conv.id}:{n}",
                )
            closed += 0 if outcome.ignored else 1
        await session.commit()
    if closed:
        log.info("closed expired drafts", extra={"count": closed})
    return closed


async def refresh_channel_tokens(services: Services) -> None:
    """Rotate provider tokens that are about to expire (Zalo)."""
    for channel in services.channels.values():
        refresh = getattr(channel, "refresh_if_expiring", None)
        if refresh is not None:
            try:
                await refresh()
            except Exception:
                log.exception("token refresh failed", extra={"channel": channel.name})


def build_scheduler(services: Services) -> AsyncIOScheduler:
    """The scheduler with every periodic job registered (not started)."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}
    scheduler.add_job(close_expired_drafts, "interval", seconds=30, args=[services],
                      id="close_expired_drafts", **common)
    scheduler.add_job(refresh_channel_tokens, "interval", minutes=10, args=[services],
                      id="refresh_channel_tokens", **common)
    return scheduler
