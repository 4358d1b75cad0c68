"""The IOC operator console under /console/ (server-rendered aiohttp + Jinja2, Vietnamese).

`ROUTES` is the whole route table with the least role each route needs; `setup_console`
registers it. Every non-public route goes through `auth.protected` (login, role, CSRF).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.web.console import (
    actions,
    admin,
    assign,
    callbacks,
    dashboard,
    deliveries,
    login,
    queue,
    report,
    search,
)
from gateway.web.console.auth import Handler, protected

STATIC_DIR = Path(__file__).parent / "static"


@dataclass(frozen=True)
class Route:
    """One console route; `role` None means public."""

    method: str
    path: str
    handler: Handler
    role: str | None = "operator"


ROUTES: tuple[Route, ...] = (
    Route("GET", "/console/login", login.login_page, None),
    Route("POST", "/console/login", login.login_submit, None),
    Route("POST", "/console/logout", login.logout),
    Route("GET", "/console/", queue.queue_page),
    Route("GET", "/console/queue/rows", queue.queue_rows),
    Route("GET", "/console/reports", search.reports_page),
    Route("GET", "/console/alerts.json", assign.alerts_json),
    Route("POST", "/console/alerts/{id:\\d+}/ack", assign.ack_alert),
    Route("GET", "/console/reports/{id:\\d+}", report.report_page),
    Route("GET", "/console/reports/{id:\\d+}/thread", report.thread_fragment),
    Route("POST", "/console/reports/{id:\\d+}/claim", assign.claim),
    Route("POST", "/console/reports/{id:\\d+}/assign", assign.assign, "supervisor"),
    Route("POST", "/console/reports/{id:\\d+}/unassign", assign.unassign),
    Route("POST", "/console/reports/{id:\\d+}/reveal", report.reveal_phone),
    Route("POST", "/console/reports/{id:\\d+}/confirm", actions.confirm),
    Route("POST", "/console/reports/{id:\\d+}/sector", actions.change_sector),
    Route("POST", "/console/reports/{id:\\d+}/urgency", actions.set_urgency),
    Route("POST", "/console/reports/{id:\\d+}/transcript", actions.correct_transcript),
    Route("POST", "/console/reports/{id:\\d+}/note", actions.add_note),
    Route("POST", "/console/reports/{id:\\d+}/reply", actions.reply),
    Route("POST", "/console/reports/{id:\\d+}/reject", actions.reject),
    Route("POST", "/console/reports/{id:\\d+}/merge", actions.merge),
    Route("GET", "/console/dashboard", dashboard.dashboard),
    Route("GET", "/console/dashboard.csv", dashboard.dashboard_csv),
    Route("GET", "/console/keywords", dashboard.keywords, "supervisor"),
    Route("GET", "/console/callbacks", callbacks.callbacks),
    Route("POST", "/console/callbacks/{id:\\d+}/done", callbacks.called_back),
    Route("GET", "/console/deliveries", deliveries.deliveries, "supervisor"),
    Route("POST", "/console/deliveries/{id:\\d+}/retry", deliveries.retry, "supervisor"),
    Route("GET", "/console/admin/operators", admin.operators, "admin"),
    Route("POST", "/console/admin/operators/{id:\\d+}", admin.operator_state, "admin"),
    Route("GET", "/console/admin/audit", admin.audit, "admin"),
)


async def _to_queue(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/console/")


def setup_console(app: web.Application) -> None:
    """Register the console's routes and its static files."""
    for route in ROUTES:
        handler = route.handler if route.role is None else protected(route.role)(route.handler)
        app.router.add_route(route.method, route.path, handler)
    app.router.add_get("/console", _to_queue)
    app.router.add_static("/console/static/", STATIC_DIR, append_version=True)
