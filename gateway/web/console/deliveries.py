"""Supervisors' view of forwarding: dead letters (with retry) and reminders of overdue reports."""

from __future__ import annotations

from aiohttp import web
from sqlmodel import col, select

from gateway.keys import SERVICES
from gateway.web.console.auth import operator_of
from gateway.web.console.render import render
from store.forward import dead_letters, requeue_dead
from store.models import OperatorAction, Report


async def deliveries(request: web.Request) -> web.StreamResponse:
    """Forwards parked after too many failures, and the latest reminders."""
    services = request.app[SERVICES]
    async with services.sessions() as db:
        dead = await dead_letters(db, limit=200)
        codes = {}
        ids = [row.report_id for row in dead if row.report_id]
        if ids:
            rows = (await db.exec(select(Report).where(col(Report.id).in_(ids)))).all()
            codes = {r.id: r for r in rows}
        reminders = (await db.exec(
            select(OperatorAction, Report)
            .join(Report, col(Report.id) == col(OperatorAction.report_id))
            .where(OperatorAction.action == "reminder")
            .order_by(col(OperatorAction.id).desc()).limit(100))).all()
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
