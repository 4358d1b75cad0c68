"""All reports, searchable: `GET /console/reports?q=…` by tracking code, phone number (roles
that may see phone numbers), words of the text, transcript and address, with filters
(status, sector, channel, agency, urgent, flagged, date range) and pages."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import phonenumbers
from aiohttp import web

from channels.registry import CHANNEL_NAMES
from gateway.domain.texts import fold
from gateway.keys import SERVICES
from gateway.web.console.auth import operator_of
from gateway.web.console.render import render
from gateway.web.console.report import can_see_phone
from store.models import REPORT_STATUSES
from store.repos import search as search_repo

PAGE_SIZE = 50
MAX_QUERY = 200
_CODE = re.compile(r"^[A-Za-z]{1,4}-\d{2,4}(-\d{0,8})?$")
_PHONE = re.compile(r"^\+?[\d .\-()]{8,16}$")


def phone_of(text: str) -> str | None:
    """The E.164 form of a Vietnamese phone number typed by an operator, or None."""
    if not _PHONE.match(text) or sum(c.isdigit() for c in text) < 9:
        return None
    try:
        number = phonenumbers.parse(text, "VN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_query(request: web.Request, sectors: dict[str, Any], may_see_phone: bool
                ) -> tuple[search_repo.SearchQuery, dict[str, str], str | None]:
    """(the store query, the form's values as given back to the page, a notice or None)."""
    q = request.query
    text = q.get("q", "").strip()[:MAX_QUERY]
    form = {"q": text}
    for name, allowed in (("status", REPORT_STATUSES[1:]), ("sector", tuple(sectors)),
                          ("channel", CHANNEL_NAMES)):
        value = q.get(name, "")
        form[name] = value if value in allowed else ""
    form["agency"] = q.get("agency", "")[:255]
    form["urgent"] = "1" if q.get("urgent") == "1" else ""
    form["flagged"] = "1" if q.get("flagged") == "1" else ""
    start, end = _day(q.get("from", "")), _day(q.get("to", ""))
    form["from"] = start.isoformat() if start else ""
    form["to"] = end.isoformat() if end else ""
    tz = ZoneInfo(request.app[SERVICES].settings.timezone)
    notice = None
    code, phone = "", ""
    words: tuple[str, ...] = ()
    if text and _CODE.match(text):
        code = text.upper()
    elif text and (number := phone_of(text)):
        if may_see_phone:
            phone = number
        else:
            notice = "Tìm theo số điện thoại chỉ dành cho giám sát viên và quản trị."
    elif text:
        words = tuple(w.lower() for w in text.split())
    query = search_repo.SearchQuery(
        code=code, phone=phone, words=words, folded_words=tuple(fold(w) for w in words),
        statuses=(form["status"],) if form["status"] else (), sector=form["sector"],
        channel=form["channel"], agency=form["agency"], urgent=bool(form["urgent"]),
        flagged=bool(form["flagged"]),
        since=datetime.combine(start, time(0, 0), tz) if start else None,
        until=datetime.combine(end + timedelta(days=1), time(0, 0), tz) if end else None)
    return query, form, notice


async def reports_page(request: web.Request) -> web.StreamResponse:
    """Every report matching the search, newest first, one page at a time."""
    services = request.app[SERVICES]
    op = operator_of(request)
    clf = services.classifier
    sectors = dict(clf.sectors) if clf is not None else {}
    query, form, notice = parse_query(request, sectors, can_see_phone(op))
    try:
        page = max(1, min(10_000, int(request.query.get("page", "1"))))
    except ValueError:
        page = 1
    async with services.sessions() as db:
        reports, total = await search_repo.search(db, query, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        agencies = await search_repo.agencies(db)
    if notice:  # an operator typed a phone number: no search by it
        reports, total = [], 0
    pages = max(1, -(-total // PAGE_SIZE))
    link = {k: v for k, v in form.items() if v}
    return render(request, "reports.html", reports=reports, total=total, form=form,
                  notice=notice, page=page, pages=pages, sectors=sectors, agencies=agencies,
                  channels=list(CHANNEL_NAMES), statuses=list(REPORT_STATUSES[1:]),
                  prev_url="?" + urlencode({**link, "page": page - 1}),
                  next_url="?" + urlencode({**link, "page": page + 1}))
