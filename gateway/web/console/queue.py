"""The queue: reports waiting for an operator, oldest first, with SLA countdown and filters.

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
from gateway.web.console.auth import now
from gateway.web.console.render import duration, render
from store.models import REPORT_STATUSES, Report
from store.repos import console as console_repo

QUEUE_LIMIT = 200


@dataclass
class Row:
    """One line of the queue."""

    report: Report
    age: str
    remaining: str
    overdue: bool
    deadline: datetime


def filters_of(request: web.Request, sectors: dict[str, Any]) -> dict[str, str]:
    """The valid filters of the request (unknown values are dropped, status defaults)."""
    q = request.query
    status = q.get("status", "submitted")
    return {
        "channel": q.get("channel", "") if q.get("channel", "") in CHANNEL_NAMES else "",
        "sector": q.get("sector", "") if q.get("sector", "") in sectors else "",
        "status": status if status in REPORT_STATUSES or status == "all" else "submitted",
        "urgent": "1" if q.get("urgent") == "1" else "",
    }


def _sectors(request: web.Request) -> dict[str, Any]:
    clf = request.app[SERVICES].classifier
    return dict(clf.sectors) if clf is not None else {}


async def load_rows(request: web.Request, f: dict[str, str]) -> tuple[list[Row], int]:
    """The reports matching the filters, oldest first, and how many match in all."""
    services = request.app[SERVICES]
    sla = timedelta(minutes=services.settings.console_sla_minutes)
    query = console_repo.QueueFilter(status=f["status"], channel=f["channel"],
                                     sector=f["sector"], urgent_only=bool(f["urgent"]))
    async with services.sessions() as db:
        reports, total = await console_repo.queue(db, query, QUEUE_LIMIT)
    t = now()
    rows = []
    for r in reports:
        start = r.submitted_at or r.created_at
        deadline = start + sla
        rows.append(Row(r, duration(t - start), duration(deadline - t), deadline < t, deadline))
    return rows, total


async def queue_page(request: web.Request) -> web.StreamResponse:
    """The queue page with its filters."""
    sectors = _sectors(request)
    f = filters_of(request, sectors)
    rows, total = await load_rows(request, f)
    return render(request, "queue.html", rows=rows, total=total, filters=f, sectors=sectors,
                  channels=list(CHANNEL_NAMES), statuses=["all", *REPORT_STATUSES[1:]],
                  sla=request.app[SERVICES].settings.console_sla_minutes)


async def queue_rows(request: web.Request) -> web.StreamResponse:
    """Only the table body of the queue, for the periodic refresh."""
    f = filters_of(request, _sectors(request))
    rows, total = await load_rows(request, f)
    resp = render(request, "_queue_rows.html", rows=rows, total=total, filters=f)
    resp.headers["X-Queue-Total"] = str(total)
    return resp
