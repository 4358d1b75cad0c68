"""Duplicate candidates: earlier open reports nearby in the same sector, or with similar text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from rapidfuzz import fuzz
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain.reports import report_text
from gateway.domain.texts import fold
from gateway.services import Services
from store.models import Report
from store.repos import console as console_repo

OPEN_STATUSES = ("submitted", "confirmed", "forwarded", "in_progress")
TEXT_SIMILARITY = 85.0  # rapidfuzz token_set_ratio on folded report text
MAX_SCAN = 500
EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True)
class Candidate:
    """An earlier report this one may duplicate, and why."""

    report: Report
    distance_m: float | None
    similarity: float
    reasons: tuple[str, ...]


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def text_similarity(a: str, b: str) -> float:
    """token_set_ratio of the two texts without case or diacritics (0-100)."""
    fa, fb = fold(a), fold(b)
    if not fa or not fb:
        return 0.0
    return float(fuzz.token_set_ratio(fa, fb))


async def find_candidates(
    session: AsyncSession, services: Services, report: Report, limit: int = 10
) -> list[Candidate]:
    """Earlier open reports within the window: same sector and within the radius, or text
    similarity ≥ 85. Nearest / most similar first."""
    settings = services.settings
    start = report.submitted_at or report.created_at
    window = timedelta(hours=settings.duplicate_window_hours)
    rows = await console_repo.duplicate_candidates(
        session, exclude_id=report.id, statuses=OPEN_STATUSES, since=start - window,
        until=start, limit=MAX_SCAN)
    text = report_text(report)
    found: list[Candidate] = []
    for other in rows:
        reasons: list[str] = []
        distance = None
        if None not in (report.lat, report.lon, other.lat, other.lon):
            distance = haversine_m(report.lat, report.lon, other.lat, other.lon)  # type: ignore[arg-type]
            if (report.sector and other.sector == report.sector
                    and distance <= settings.duplicate_radius_m):
                reasons.append("near")
        similarity = text_similarity(text, report_text(other))
        if similarity >= TEXT_SIMILARITY:
            reasons.append("text")
        if reasons:
            found.append(Candidate(other, distance, similarity, tuple(reasons)))
    found.sort(key=lambda c: (c.distance_m if c.distance_m is not None else 1e12,
                              -c.similarity))
    return found[:limit]
