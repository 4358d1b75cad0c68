"""Scheduled work (APScheduler 3.x `AsyncIOScheduler`).

Close expired drafts, refresh provider tokens, deliver forward rows to the central system,
queue new ratings for forwarding, poll the Open311 central endpoint for status changes,
remind operators and supervisors, and write the weekly summary (Monday 07:00 local time).
Only the leading process runs them (gateway/workers/leader.py); the forward rows are also claimed
with SKIP LOCKED, so a second runner could never deliver a row twice anyway.
"""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gateway.domain.dialog import Dialog
from gateway.services import Services
from gateway.web.central import poll_central
from gateway.web.media_access import sweep_uploads
from gateway.workers.alerts import push_alerts
from gateway.workers.forwarder import Forwarder, queue_new_ratings
from gateway.workers.reminders import remind_operators, remind_supervisors
from gateway.workers.weekly import weekly_summary
from store.models import utcnow
from store.repos import conversations as conversations_repo

log = logging.getLogger("paht.jobs")


async def close_expired_drafts(services: Services) -> int:
    """Close drafts whose conversation window has closed (`Dialog.close_expired`).

    A draft that describes a problem is submitted and the citizen gets the code; greetings,
    thanks, questions and empty drafts are closed quietly; a photo-only draft is flagged
    `photo_only` (an operator looks at it), one without a place `no_place`.
    """
    dialog = Dialog(services)
    closed = 0
    async with services.sessions() as session:
        for conv in await conversations_repo.expired(session, utcnow()):
            outcome = await dialog.close_expired(session, conv)
            for n, reply in enumerate(outcome.replies):
                report = outcome.report
                await services.lifecycle.notifier.queue(
                    session, channel=conv.channel, recipient=conv.sender,
                    text=reply.text, report_id=report.id if report else None,
                    dedup_key=f"expired:{report.id if report else conv.id}:{n}",
                )
            closed += 0 if outcome.ignored else 1
        await session.commit()
    if closed:
        log.info("closed expired drafts", extra={"count": closed})
    return closed


async def refresh_channel_tokens(services: Services) -> None:
    """Rotate provider tokens that expire soon (Zalo OA); failures are logged, not raised."""
    await services.channels.refresh_tokens()


def make_forwarder(services: Services) -> Forwarder | None:
    """The Forwarder for the configured sink, or None (logged) when it is misconfigured."""
    try:
        return Forwarder(services)
    except ValueError:
        log.exception("forwarding disabled: sink misconfigured",
                      extra={"sink": services.settings.forward_sink})
        return None


async def remind(services: Services) -> None:
    """Operators (console SLA) and supervisors (agency deadlines)."""
    await remind_operators(services)
    await remind_supervisors(services)


async def sweep_orphan_uploads(services: Services) -> int:
    """Delete web chat uploads that no message ever referenced (abandoned or abusive)."""
    return await sweep_uploads(services.settings, services.sessions)


def build_scheduler(services: Services, forwarder: Forwarder | None = None) -> AsyncIOScheduler:
    """The scheduler with every periodic job registered (not started)."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}
    scheduler.add_job(close_expired_drafts, "interval", seconds=30, args=[services],
                      id="close_expired_drafts", **common)
    scheduler.add_job(push_alerts, "interval", seconds=10, args=[services], id="push_alerts",
                      **common)
    scheduler.add_job(sweep_orphan_uploads, "interval", hours=1, args=[services],
                      id="sweep_uploads", **common)
    scheduler.add_job(refresh_channel_tokens, "interval", minutes=10, args=[services],
                      id="refresh_channel_tokens", **common)
    if forwarder is not None:
        scheduler.add_job(forwarder.run_until_idle, "interval", seconds=5,
                          id="deliver_forwards", **common)
        if services.settings.forward_sink == "open311":
            scheduler.add_job(poll_central, "interval",
                              seconds=services.settings.central_poll_seconds,
                              args=[services, forwarder.sink], id="poll_central", **common)
    scheduler.add_job(queue_new_ratings, "interval", seconds=30, args=[services],
                      id="queue_new_ratings", **common)
    scheduler.add_job(remind, "interval", minutes=5, args=[services], id="reminders", **common)
    scheduler.add_job(weekly_summary, "cron", day_of_week="mon", hour=7, minute=0,
                      timezone=services.settings.timezone, args=[services],
                      id="weekly_summary", coalesce=True, max_instances=1,
                      misfire_grace_time=6 * 3600)
    return scheduler
