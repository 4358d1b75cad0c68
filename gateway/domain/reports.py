"""Submitting a report: tracking code, classification once, the life-cycle step, the trust
gate (`gateway.domain.trust`: review reasons, duplicates) and the review policy that lets the
classifier confirm it (PAHT_REVIEW_POLICY). Status changes themselves live in
`gateway.domain.lifecycle`; the functions taking `Services` here are thin wrappers kept for
the callers that still hold the bag.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain import lifecycle as lc
from gateway.domain import trust
from gateway.domain.lifecycle import CLASSIFIER, GATEWAY, Actor, Lifecycle
from gateway.domain.texts import fold
from gateway.services import Services
from gateway.settings import Settings
from store.models import Classification, Report, ReportHistory, utcnow
from store.repos import codes as codes_repo
from store.repos import reports as reports_repo

log = logging.getLogger("paht.reports")

find_by_code = reports_repo.find_by_code
last_inbound_at = reports_repo.last_inbound_at


def _keep_search_text(_mapper: object, _connection: object, report: Report) -> None:
    """Before a report is written: its words without diacritics, for the console's search."""
    words = " ".join(p for p in (report.text, report.transcript, report.address) if p)
    report.search_text = fold(words) or None


event.listen(Report, "before_insert", _keep_search_text)
event.listen(Report, "before_update", _keep_search_text)


def report_text(report: Report) -> str:
    """What the citizen said: typed text and, for audio, the transcript."""
    parts = [p for p in (report.text, report.transcript) if p]
    return "\n".join(parts)


def classify_report(classifier: Any | None, report: Report) -> Classification | None:
    """Run the classifier on the report, copy its verdict onto the record and apply the
    trust gate's review reasons (`report.review_reasons`)."""
    cfg = trust.config_of(classifier)
    if classifier is None:
        trust.apply_gate(report, None, cfg)  # no classifier: an operator decides
        return None
    result = classifier.classify(report_text(report))
    report.sector = result.sector
    report.score = round(float(result.score), 4)
    report.runner_up = result.runner_up
    report.matches = list(result.to_dict()["matches"])
    report.urgent = report.urgent or bool(result.urgent)
    trust.apply_gate(report, result, cfg)
    if result.address and not report.address:
        report.address = result.address
    try:
        report.agency = classifier.route(result.sector, report_text(report)).agency
    except Exception:  # routing table incomplete: leave the agency to the operator
        log.warning("no agency route", extra={"sector": result.sector})
    return Classification(
        report_id=report.id or 0,
        sector=result.sector,
        score=report.score,
        runner_up=result.runner_up,
        runner_up_score=round(float(result.runner_up_score), 4),
        needs_review=report.needs_review,
        urgent=bool(result.urgent),
        matches=report.matches,
    )


def auto_confirms(settings: Settings, report: Report, classified: bool) -> bool:
    """Whether the review policy lets the classifier's verdict stand without an operator."""
    policy = settings.review_policy
    if report.status == lc.S.MERGED:
        return False  # linked to its original: nothing of its own to forward
    auto = classified and (
        policy == "none" or (policy == "low_confidence" and not report.needs_review))
    # Whatever the policy, urgent reports and complaints about officials reach a human.
    must_see = {"urgent", "misconduct", "empty", "no_transcript", "transcript_not_vietnamese"}
    # An abuse flag alone never holds a correct report (issue 13): it stays visible on it.
    return auto and not must_see & set(report.review_reasons)


async def submit_report(session: AsyncSession, life: Lifecycle, report: Report) -> Report:
    """Give a draft its tracking code, classify it, submit it and apply the review policy."""
    if report.code is None:
        when = utcnow().astimezone(ZoneInfo(life.settings.timezone))
        report.code = await codes_repo.next_tracking_code(
            session, life.settings.tracking_prefix, when)
    classification = classify_report(life.classifier, report)
    await life.submit(session, report)
    if classification is not None:
        classification.report_id = report.id or 0
        session.add(classification)
    # Duplicates before forwarding: compared with open and forwarded reports.
    await trust.check_duplicates(session, life, report, trust.config_of(life.classifier))
    if classification is not None:
        classification.needs_review = report.needs_review
    auto = auto_confirms(life.settings, report, classification is not None)
    if auto:
        await life.confirm(session, report, CLASSIFIER)
    log.info("report submitted",
             extra={"code": report.code, "sector": report.sector, "auto_confirmed": auto,
                    "review": trust.summary(report.review_reasons), "status": report.status})
    return report


async def submit(session: AsyncSession, services: Services, report: Report) -> Report:
    """`submit_report` for callers holding the Services bag."""
    return await submit_report(session, services.lifecycle, report)


async def confirm(
    session: AsyncSession, services: Services, report: Report, source: str = "operator",
    operator_id: int | None = None,
) -> None:
    """`Lifecycle.confirm` for callers holding the Services bag (submitted → confirmed).

    Without an operator's id there is no one to audit: the step is the gateway's then.
    """
    if operator_id is not None:
        actor = Actor.operator(operator_id)
    else:
        actor = CLASSIFIER if source == "classifier" else GATEWAY
    await services.lifecycle.confirm(session, report, actor)


def add_history(
    session: AsyncSession, report: Report, status: str, note: str | None = None,
    source: str = "gateway",
) -> None:
    """Append a note to the history without moving the status (a rating, for instance)."""
    if status != report.status:
        raise lc.IllegalTransition(report.status, status, "use gateway.domain.lifecycle")
    session.add(ReportHistory(report_id=report.id or 0, status=status, note=note, source=source))


def local_time(services: Services, when: datetime | None) -> str:
    """A UTC time shown in the province's time zone (Asia/Ho_Chi_Minh)."""
    return lc.local_time(ZoneInfo(services.settings.timezone), when)


def status_text(services: Services, report: Report, original: Report | None = None) -> str:
    """The citizen-facing status line (`Lifecycle.status_line` looks the original up)."""
    return lc.status_text(services.texts, services.classifier,
                          ZoneInfo(services.settings.timezone), report, original)

