"""Who works a report (claim, assign, give back; audited) and the urgent alerts the console
pushes: `GET /console/alerts.json` (polled every few seconds by every console page) and the
acknowledgement of a duty alert (audited)."""

from __future__ import annotations

import json

from aiohttp import web

from gateway.keys import SERVICES
from gateway.web.console.auth import operator_of
from gateway.web.console.render import local
from gateway.web.console.report import load_report
from gateway.web.console.settings_file import load as load_config
from store.models import DutyAlert, Operator, OperatorAction, Report, utcnow
from store.repos import alerts as alerts_repo
from store.repos import console as console_repo
from store.repos import search as search_repo

URGENT_LIMIT = 20


def _back(report: Report, key: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/console/reports/{report.id}?done={key}")


async def _set(request: web.Request, target: int | None, action: str, key: str
               ) -> web.HTTPSeeOther:
    services = request.app[SERVICES]
    op = operator_of(request)
    async with services.sessions() as db:
        report = await load_report(db, request.match_info["id"])
        if target is not None:
            other = await db.get(Operator, target)
            if other is None or not other.active:
                raise _back(report, "invalid")
        before = {"assigned_to": report.assigned_to}
        report.assigned_to = target
        report.assigned_at = utcnow() if target is not None else None
        db.add(report)
        db.add(OperatorAction(report_id=report.id, operator_id=op.id, action=action,
                              before=before, after={"assigned_to": target}))
        await db.commit()
    return _back(report, key)


async def claim(request: web.Request) -> web.StreamResponse:
    """The operator takes the report in hand."""
    raise await _set(request, operator_of(request).id, "claim", "claimed")


async def assign(request: web.Request) -> web.StreamResponse:
    """Give the report to another operator (supervisors and admins)."""
    form = await request.post()
    try:
        target = int(str(form.get("operator", "")))
    except ValueError:
        target = -1
    raise await _set(request, target, "assign", "assigned")


async def unassign(request: web.Request) -> web.StreamResponse:
    """Put the report back in the shared queue."""
    raise await _set(request, None, "unassign", "unassigned")


async def alerts_json(request: web.Request) -> web.StreamResponse:
    """Open duty alerts and urgent reports waiting for a decision, newest first."""
    services = request.app[SERVICES]
    cfg = load_config(services.settings.config_dir)
    async with services.sessions() as db:
        alerts = await console_repo.open_alerts(db)
        urgent, _ = await search_repo.search(
            db, search_repo.SearchQuery(urgent=True, statuses=("submitted",)), 0, URGENT_LIMIT)
    return web.json_response({
        "alerts": [{"id": a.id, "report_id": r.id, "code": r.code, "hazard": cfg.hazard(a.hazard),
                    "at": local(services, a.created_at)} for a, r in alerts],
        "urgent": [{"id": r.id, "code": r.code, "text": (r.text or r.transcript or "")[:120],
                    "at": local(services, r.submitted_at or r.created_at)} for r in urgent],
    }, dumps=_dumps)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


async def ack_alert(request: web.Request) -> web.StreamResponse:
    """The operator has seen a duty alert: it leaves the banner (audited)."""
    services = request.app[SERVICES]
    op = operator_of(request)
    try:
        alert_id = int(request.match_info["id"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    async with services.sessions() as db:
        alert = await db.get(DutyAlert, alert_id)
        if alert is None:
            raise web.HTTPNotFound()
        if await alerts_repo.acknowledge(db, alert_id, op.id or 0):
            db.add(OperatorAction(report_id=alert.report_id, operator_id=op.id,
                                  action="ack_alert", after={"hazard": alert.hazard,
                                                             "alert": alert_id}))
        await db.commit()
    raise web.HTTPSeeOther(f"/console/reports/{alert.report_id}?done=ack")
