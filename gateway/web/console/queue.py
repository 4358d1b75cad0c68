"""The queue: reports waiting for a decision, urgent first then oldest, with why each waits,
who took it, the SLA countdown and filters ("của tôi", "chưa ai nhận").

The page polls `/console/queue/rows` (the table body only) every 20 s with the same filters,
so the list stays current without the operator losing the filters or the scroll position.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from channels.registry import CHANNEL_NAMES
from gateway.keys import SERVICES
from gateway.web.console.auth import now, operator_of
from gateway.web.console.labels import queue_reasons
from gateway.web.console.render import duration, render
from store.models import REPORT_STATUSES, Report
from store.repos import console as console_repo
from store.repos import operators as operators_repo

QUEUE_LIMIT = 200


@dataclass
class Row:
    """One line of the queue."""

    report: Report
    age: str
    remaining: str
    overdue: bool
    deadline: datetime
    reasons: list[tuple[str, str]]
    assignee: str | None = None


VIEWS = ("", "mine", "unassigned")


def age_end(report: Report, t: datetime) -> datetime:
    """Until when a report's waiting age counts: now while it waits, else when it left."""
    if report.status == "submitted":
        return t
    return report.confirmed_at or report.resolved_at or report.updated_at or t


def filters_of(request: web.Request, sectors: dict[str, Any]) -> dict[str, str]:
    """The valid filters of the request (unknown values are dropped, status defaults)."""
    q = request.query
    status = q.get("status", "submitted")
    return {
        "channel": q.get("channel", "") if q.get("channel", "") in CHANNEL_NAMES else "",
        "sector": q.get("sector", "") if q.get("sector", "") in sectors else "",
        "status": status if status in REPORT_STATUSES or status == "all" else "submitted",
        "urgent": "1" if q.get("urgent") == "1" else "",
        "view": q.get("view", "") if q.get("view", "") in VIEWS else "",
    }


def _sectors(request: web.Request) -> dict[str, Any]:
    clf = request.app[SERVICES].classifier
    return dict(clf.sectors) if clf is not None else {}


async def load_rows(request: web.Request, f: dict[str, str]) -> tuple[list[Row], int]:
    """The reports matching the filters, oldest first, and how many match in all."""
    services = request.app[SERVICES]
    sla = timedelta(minutes=services.settings.console_sla_minutes)
    me = operator_of(request)
    query = console_repo.QueueFilter(
        status=f["status"], channel=f["channel"], sector=f["sector"],
        urgent_only=bool(f["urgent"]), assigned_to=me.id if f["view"] == "mine" else None,
        unassigned=f["view"] == "unassigned")
    async with services.sessions() as db:
        reports, total = await console_repo.queue(db, query, QUEUE_LIMIT)
        names = {o.id: o.display_name or o.username
                 for o in await operators_repo.all_operators(db)}
    t = now()
    policy = services.settings.review_policy
    rows = []
    for r in reports:
        start = r.submitted_at or r.created_at
        deadline = start + sla
        rows.append(Row(r, duration(age_end(r, t) - start), duration(deadline - t),
                        deadline < t, deadline, queue_reasons(r, policy),
                        names.get(r.assigned_to) if r.assigned_to else None))
    return rows, total


async def queue_page(request: web.Request) -> web.StreamResponse:
    """The queue page with its filters."""
    sectors = _sectors(request)
    f = filters_of(request, sectors)
    rows, total = await load_rows(request, f)
    async with request.app[SERVICES].sessions() as db:
        alerts = await console_repo.open_alerts(db)
    return render(request, "queue.html", rows=rows, total=total, filters=f, sectors=sectors,
                  alerts=alerts,
                  channels=list(CHANNEL_NAMES), statuses=["all", *REPORT_STATUSES[1:]],
                  sla=request.app[SERVICES].settings.console_sla_minutes)


async def queue_rows(request: web.Request) -> web.StreamResponse:
    """Only the table body of the queue, for the periodic refresh."""
    f = filters_of(request, _sectors(request))
    rows, total = await load_rows(request, f)
    resp = render(request, "_queue_rows.html", rows=rows, total=total, filters=f)
    resp.headers["X-Queue-Total"] = str(total)
    return resp
