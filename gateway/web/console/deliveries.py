"""Supervisors' view of forwarding: dead letters (with retry) and reminders of overdue reports."""

from __future__ import annotations

from aiohttp import web

from gateway.keys import SERVICES
from gateway.web.console.auth import operator_of
from gateway.web.console.render import render
from store.forward import dead_letters, requeue_dead
from store.models import OperatorAction
from store.repos import console as console_repo
from store.repos import reports as reports_repo


async def deliveries(request: web.Request) -> web.StreamResponse:
    """Forwards parked after too many failures, and the latest reminders."""
    services = request.app[SERVICES]
    async with services.sessions() as db:
        dead = await dead_letters(db, limit=200)
        codes = await reports_repo.by_ids(db, [row.report_id for row in dead if row.report_id])
        reminders = await console_repo.recent_reminders(db, limit=100)
    return render(request, "deliveries.html", dead=dead, reports=codes, reminders=reminders,
                  done=request.query.get("done", ""))


async def retry(request: web.Request) -> web.StreamResponse:
    """Put one dead forward back in the queue; logged in the audit trail."""
    services = request.app[SERVICES]
    me = operator_of(request)
    try:
        outbox_id = int(request.match_info["id"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    async with services.sessions() as db:
        if not await requeue_dead(db, outbox_id):
            raise web.HTTPSeeOther("/console/deliveries?done=none")
        db.add(OperatorAction(operator_id=me.id, action="retry_forward",
                              after={"outbox_id": outbox_id}))
        await db.commit()
    services.outbox_wake.set()
    raise web.HTTPSeeOther("/console/deliveries?done=retried")
