"""Dashboard (charts and CSV export) and the keyword suggestions page."""

from __future__ import annotations

import csv
import io

from aiohttp import web

from gateway.domain.keywords import load_corrections, suggestions_snippet
from gateway.keys import SERVICES
from gateway.web.console.render import channel_badge, render, sector_name
from gateway.web.console.stats import compute, day_bars, sector_bars

CSV_FIELDS = ("code", "channel", "sector", "predicted_sector", "status", "urgent",
              "submitted_at", "confirmed_at", "minutes_to_confirm", "auto_accepted",
              "overridden", "duplicate_of")


def _days(request: web.Request) -> int:
    try:
        return max(1, min(90, int(request.query.get("days", "14"))))
    except ValueError:
        return 14


async def dashboard(request: web.Request) -> web.StreamResponse:
    """Charts and rates for the last N days (default 14)."""
    services = request.app[SERVICES]
    days = _days(request)
    async with services.sessions() as db:
        stats = await compute(db, services, days)
    names = {code: sector_name(services, code) for code in
             {*stats.per_sector, *stats.sectors}}
    channel_names = {c: channel_badge(c)[1] for c in stats.channels}
    return render(request, "dashboard.html", stats=stats, days=days,
                  day_chart=day_bars(stats, "channel", channel_names),
                  day_sector_chart=day_bars(stats, "sector", names),
                  sector_chart=sector_bars(stats, names),
                  names=names, sla=services.settings.console_sla_minutes)


async def dashboard_csv(request: web.Request) -> web.StreamResponse:
    """One line per report of the period (no personal data), for spreadsheets."""
    services = request.app[SERVICES]
    days = _days(request)
    async with services.sessions() as db:
        stats = await compute(db, services, days)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for row in stats.rows:
        writer.writerow(row)
    # A BOM so that spreadsheet programs read the Vietnamese text as UTF-8.
    return web.Response(
        body=("\ufeff" + buf.getvalue()).encode("utf-8"), content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="paht-{days}-ngay.csv"'},
    )


async def keywords(request: web.Request) -> web.StreamResponse:
    """`paht keywords suggest` output, for a supervisor to copy into config/sectors.toml."""
    services = request.app[SERVICES]
    try:
        min_count = max(1, min(50, int(request.query.get("min_count", "2"))))
    except ValueError:
        min_count = 2
    async with services.sessions() as db:
        corrections = await load_corrections(db)
    snippet: str | None = None
    suggestions: dict[str, list[tuple[str, int]]] = {}
    if services.classifier is not None:
        snippet, suggestions = suggestions_snippet(corrections, services.classifier, min_count)
    return render(request, "keywords.html", snippet=snippet, suggestions=suggestions,
                  corrections=len(corrections), min_count=min_count)
