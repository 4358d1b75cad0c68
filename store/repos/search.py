"""Search over every report (the console's reports page): code, phone, words, filters, pages.

The caller normalises what it is given (a phone number to E.164, words to lower case); the
store only matches. Words match the text, the transcript and the address (every word must
appear somewhere, case-insensitively).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import Citizen, Report, ReportStatus

MAX_WORDS = 8


@dataclass(frozen=True)
class SearchQuery:
    """What to look for; empty fields do not filter."""

    code: str = ""  # a tracking code or its beginning (upper case)
    phone: str = ""  # E.164
    words: tuple[str, ...] = ()  # lower case
    folded_words: tuple[str, ...] = ()  # the same words without diacritics
    statuses: tuple[str, ...] = ()
    sector: str = ""
    channel: str = ""
    agency: str = ""
    urgent: bool = False
    flagged: bool = False  # flags or review reasons set
    since: datetime | None = None
    until: datetime | None = None
    assigned_to: int | None = None
    unassigned: bool = False
    exclude: tuple[str, ...] = field(default=(ReportStatus.DRAFT,))


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def conditions(q: SearchQuery) -> list[Any]:
    """The WHERE clauses of a query (shared by the count and the page)."""
    conds: list[Any] = [col(Report.status).not_in(list(q.exclude))]
    if q.code:
        conds.append(col(Report.code).like(q.code.replace("%", "") + "%"))
    if q.phone:
        phone_citizens = select(Citizen.id).where(Citizen.phone == q.phone)
        conds.append(or_(col(Report.citizen_id).in_(phone_citizens),
                         col(Report.sender) == f"tel:{q.phone}"))
    for word, folded in zip(q.words[:MAX_WORDS], q.folded_words, strict=False):
        pattern = _like(word)
        conds.append(or_(
            col(Report.search_text).like(_like(folded), escape="\\"),
            func.lower(Report.text).like(pattern, escape="\\"),
            func.lower(func.coalesce(Report.transcript, "")).like(pattern, escape="\\"),
            func.lower(func.coalesce(Report.address, "")).like(pattern, escape="\\"),
        ))
    if q.statuses:
        conds.append(col(Report.status).in_(list(q.statuses)))
    if q.sector:
        conds.append(Report.sector == q.sector)
    if q.channel:
        conds.append(Report.channel == q.channel)
    if q.agency:
        conds.append(Report.agency == q.agency)
    if q.urgent:
        conds.append(col(Report.urgent).is_(True))
    if q.flagged:
        conds.append(or_(sa.cast(Report.flags, sa.Text) != "[]",
                         sa.cast(Report.review_reasons, sa.Text) != "[]"))
    if q.since is not None:
        conds.append(col(Report.created_at) >= q.since)
    if q.until is not None:
        conds.append(col(Report.created_at) < q.until)
    if q.assigned_to is not None:
        conds.append(Report.assigned_to == q.assigned_to)
    if q.unassigned:
        conds.append(col(Report.assigned_to).is_(None))
    return conds


async def search(session: AsyncSession, q: SearchQuery, offset: int, limit: int
                 ) -> tuple[list[Report], int]:
    """One page of matching reports, newest first, and how many match in all."""
    conds = conditions(q)
    total = (await session.exec(select(func.count()).select_from(Report).where(*conds))).one()
    stmt = (select(Report).where(*conds)
            .order_by(col(Report.created_at).desc(), col(Report.id).desc())
            .offset(offset).limit(limit))
    return list((await session.exec(stmt)).all()), int(total)


async def agencies(session: AsyncSession) -> list[str]:
    """The agencies reports were routed to (for the filter)."""
    stmt = (select(Report.agency).where(col(Report.agency).is_not(None))
            .group_by(col(Report.agency)).order_by(col(Report.agency)))
    return [a for a in (await session.exec(stmt)).all() if a]


async def reports_of_citizen(session: AsyncSession, citizen_id: int, exclude_id: int | None,
                             limit: int = 20) -> list[Report]:
    """A citizen's other reports (drafts excluded), newest first."""
    stmt = (select(Report).where(Report.citizen_id == citizen_id,
                                 col(Report.id) != exclude_id,
                                 Report.status != ReportStatus.DRAFT)
            .order_by(col(Report.id).desc()).limit(limit))
    return list((await session.exec(stmt)).all())
