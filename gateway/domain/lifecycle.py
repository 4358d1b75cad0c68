"""The report life cycle: the only place a report changes status.

The allowed steps are data (`TRANSITIONS`); `Lifecycle` has one method per step. Each writes in
the caller's transaction — the caller commits — the status and its timestamp, a ReportHistory
row, an OperatorAction audit row (before/after) when an operator acts, and the outbox rows: the
forward row `forward:<code>` on confirmation, the citizen notices (`notify.*`) and the rating
question after resolution. A step that is not allowed raises `IllegalTransition` before
anything is written. Events from outside (the central system, the forwarder's delivery
receipt) may come late, replayed or out of order: those are ignored and return False.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain.notify import DEFAULT_AGENCY, Notifier, subscriber_flag, subscriber_ids
from gateway.domain.texts import Texts
from gateway.settings import Settings
from store.models import OperatorAction, Outbox, Report, ReportHistory, ReportStatus, utcnow
from store.repos import reports as repo

log = logging.getLogger("paht.lifecycle")

S = ReportStatus
TRANSITIONS: Mapping[ReportStatus, frozenset[ReportStatus]] = {
    S.DRAFT: frozenset({S.SUBMITTED, S.REJECTED}),
    S.SUBMITTED: frozenset({S.CONFIRMED, S.REJECTED, S.MERGED}),
    S.CONFIRMED: frozenset({S.FORWARDED, S.IN_PROGRESS, S.RESOLVED, S.REJECTED, S.MERGED}),
    S.FORWARDED: frozenset({S.IN_PROGRESS, S.RESOLVED, S.REJECTED, S.MERGED}),
    S.IN_PROGRESS: frozenset({S.RESOLVED, S.REJECTED, S.MERGED}),
    S.RESOLVED: frozenset(),
    S.REJECTED: frozenset(),
    S.MERGED: frozenset(),
}
OPEN: frozenset[ReportStatus] = frozenset({S.SUBMITTED, S.CONFIRMED, S.FORWARDED, S.IN_PROGRESS})
FINAL: frozenset[ReportStatus] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
CENTRAL_STATUSES: tuple[ReportStatus, ...] = (S.IN_PROGRESS, S.RESOLVED, S.REJECTED)
# What the central system may know: it hears of a report once it is confirmed.
KNOWN_TO_CENTRAL = frozenset({S.CONFIRMED, S.FORWARDED, S.IN_PROGRESS})

Source = Literal["citizen", "classifier", "operator", "central", "gateway"]


class IllegalTransition(ValueError):
    """A step the life cycle does not allow; nothing was written."""

    def __init__(self, current: str, target: str, why: str = "") -> None:
        super().__init__(f"{current} → {target} is not allowed" + (f": {why}" if why else ""))
        self.current = current
        self.target = target


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a report move; an operator carries their console account id."""

    source: Source
    operator_id: int | None = None

    def __post_init__(self) -> None:
        if self.source not in get_args(Source):
            raise ValueError(f"unknown actor source {self.source!r}")
        if (self.operator_id is not None) != (self.source == "operator"):
            raise ValueError("operator_id is given exactly when the actor is an operator")

    @classmethod
    def operator(cls, operator_id: int) -> Actor:
        """An operator of the console."""
        return cls("operator", operator_id)


CITIZEN = Actor("citizen")
CLASSIFIER = Actor("classifier")
CENTRAL = Actor("central")
GATEWAY = Actor("gateway")


def allowed(current: str, target: str) -> bool:
    """Whether `current` → `target` is a step of the life cycle."""
    try:
        return ReportStatus(target) in TRANSITIONS[ReportStatus(current)]
    except ValueError:
        return False


def check(current: str, target: str) -> None:
    """Raise IllegalTransition unless `current` → `target` is allowed."""
    if not allowed(current, target):
        raise IllegalTransition(current, target)


class Lifecycle:
    """Moves reports from status to status, with everything each step writes."""

    def __init__(self, settings: Settings, texts: Texts, classifier: Any | None,
                 outbox_wake: asyncio.Event) -> None:
        self.settings = settings
        self.texts = texts
        self.classifier = classifier  # nlp.classifier.Classifier, for sector names
        self.outbox_wake = outbox_wake
        self.notifier = Notifier(texts, outbox_wake)

    # -- the steps ------------------------------------------------------------------------

    async def submit(self, session: AsyncSession, report: Report,
                     actor: Actor = CITIZEN) -> None:
        """draft → submitted: the report has its tracking code and waits for confirmation."""
        check(report.status, S.SUBMITTED)
        if report.code is None:
            raise IllegalTransition(report.status, S.SUBMITTED, "no tracking code")
        await self._step(session, report, S.SUBMITTED, actor)

    async def confirm(self, session: AsyncSession, report: Report, actor: Actor) -> None:
        """submitted → confirmed, queuing its forwarding to the centre (`forward:<code>`)."""
        check(report.status, S.CONFIRMED)
        if actor.source == "operator":
            report.needs_review = False  # the operator's confirmation is the review
        await self._step(session, report, S.CONFIRMED, actor, audit="confirm",
                         after={"sector": report.sector, "agency": report.agency})
        session.add(Outbox(kind="forward", report_id=report.id, payload={"code": report.code},
                           dedup_key=f"forward:{report.code}"))
        self.outbox_wake.set()

    async def reject(self, session: AsyncSession, report: Report, actor: Actor,
                     reason: str | None, kind: str | None = None) -> None:
        """An open report is refused (spam, out of scope, or by the centre); the citizen hears
        the reason. A draft is cancelled with `cancel_draft` instead."""
        if report.status == S.DRAFT:
            raise IllegalTransition(report.status, S.REJECTED, "a draft is cancelled")
        check(report.status, S.REJECTED)
        if kind:
            report.flags = sorted({*report.flags, kind})
        await self._step(session, report, S.REJECTED, actor, note=reason, audit="reject",
                         after={"kind": kind} if kind else {}, audit_note=reason)
        await self.notifier.tell(session, report, S.REJECTED, reason)

    async def cancel_draft(self, session: AsyncSession, draft: Report, why: str,
                           actor: Actor = CITIZEN) -> None:
        """draft → rejected: cancelled by the citizen or left empty (`why` becomes a flag)."""
        if draft.status != S.DRAFT:
            raise IllegalTransition(draft.status, S.REJECTED, "only a draft is cancelled")
        draft.flags = [*draft.flags, why] if why not in draft.flags else draft.flags
        await self._step(session, draft, S.REJECTED, actor, note=why)

    async def merge(self, session: AsyncSession, report: Report, original: Report,
                    actor: Actor, note: str | None = None) -> None:
        """An open report becomes a duplicate of an open `original` (also after forwarding):
        its citizen — and whoever followed it — now follows the original."""
        check(report.status, S.MERGED)
        if (original.id is None or original.id == report.id or original.status not in OPEN
                or original.duplicate_of is not None):
            raise IllegalTransition(report.status, S.MERGED,
                                    "the original must be another open report")
        followers = [report.citizen_id, *subscriber_ids(report)]
        new_flags = [subscriber_flag(c) for c in followers if c != original.citizen_id]
        flags = [*original.flags, *(f for f in dict.fromkeys(new_flags)
                                    if f not in original.flags)]
        if flags != original.flags:
            original.flags = flags
            original.updated_at = utcnow()
            session.add(original)
        report.duplicate_of = original.id
        report.flags = sorted({*report.flags, "duplicate"})
        await repo.repoint_duplicates(session, report.id or 0, original.id)
        await self._step(
            session, report, S.MERGED, actor,
            note=self.texts.get("status.merged_note", original=original.code), audit="merge",
            before={"duplicate_of": None}, audit_note=note,
            after={"duplicate_of": original.id, "original": original.code,
                   "subscriber": report.citizen_id})
        await self.notifier.tell(session, report, S.MERGED, original=original.code)
        if ReportStatus(original.status) in KNOWN_TO_CENTRAL:
            # The centre has the original: tell it of the link (a `link` forward row).
            await repo.queue_forward_link(session, report)
            self.outbox_wake.set()

    async def start(self, session: AsyncSession, report: Report, actor: Actor,
                    note: str | None = None, agency: str | None = None) -> None:
        """confirmed/forwarded → in_progress: an agency works on it."""
        check(report.status, S.IN_PROGRESS)
        self._set_agency(report, agency)
        await self._step(session, report, S.IN_PROGRESS, actor, note=note)
        await self.notifier.tell(session, report, S.IN_PROGRESS, note)

    async def resolve(self, session: AsyncSession, report: Report, actor: Actor,
                      note: str | None = None, agency: str | None = None) -> None:
        """→ resolved: the citizen hears the result and is asked to rate it."""
        check(report.status, S.RESOLVED)
        self._set_agency(report, agency)
        await self._step(session, report, S.RESOLVED, actor, note=note)
        await self.notifier.tell(session, report, S.RESOLVED, note)
        await self.notifier.ask_rating(session, report)

    # -- events from outside: late or replayed ones are ignored -----------------------------

    async def forward(self, session: AsyncSession, report: Report,
                      central_ref: str | None = None) -> None:
        """confirmed → forwarded: the centre has the report; the citizen is told where."""
        check(report.status, S.FORWARDED)
        if central_ref and not report.central_ref:
            report.central_ref = central_ref[:64]
        await self._step(session, report, S.FORWARDED, GATEWAY,
                         note=f"central_ref={central_ref}" if central_ref else None)
        await self.notifier.tell(session, report, S.FORWARDED)

    async def mark_forwarded(self, session: AsyncSession, report: Report,
                             central_ref: str | None) -> bool:
        """The forwarder's receipt: keep the centre's reference and `forward` a confirmed
        report; False when the report already moved on (a late receipt)."""
        if report.status == S.CONFIRMED:
            await self.forward(session, report, central_ref)
            return True
        if central_ref and not report.central_ref:
            report.central_ref = central_ref[:64]
            session.add(report)
        log.info("forward receipt after a later status",
                 extra={"code": report.code, "have": report.status})
        return False

    async def apply_central(self, session: AsyncSession, report: Report, status: str,
                            note: str | None = None, agency: str | None = None) -> bool:
        """A status from the central system (callback or poll); False, with nothing written,
        when it is late, replayed, backwards, or about a report the centre cannot know."""
        if (status not in CENTRAL_STATUSES or report.status not in KNOWN_TO_CENTRAL
                or not allowed(report.status, status)):
            log.info("central status ignored",
                     extra={"code": report.code, "have": report.status, "got": status})
            return False
        if status == S.IN_PROGRESS:
            await self.start(session, report, CENTRAL, note, agency)
        elif status == S.RESOLVED:
            await self.resolve(session, report, CENTRAL, note, agency)
        else:
            self._set_agency(report, agency)
            await self.reject(session, report, CENTRAL, note)
        return True

    # -- the citizen's rating (not a status: the report keeps its own) ---------------------

    async def rate(self, session: AsyncSession, report: Report, value: int) -> None:
        """Store the citizen's 1–5 rating, note it in the history and forward it too."""
        if not 1 <= value <= 5:
            raise ValueError("a rating is 1 to 5")
        report.rating = value
        report.updated_at = utcnow()
        session.add(report)
        session.add(ReportHistory(report_id=report.id or 0, status=report.status,
                                  note=f"rating={value}", source=CITIZEN.source))
        await queue_rating(session, report)


    # -- showing a status -----------------------------------------------------------------

    async def status_line(self, session: AsyncSession, report: Report) -> str:
        """The citizen-facing status line of a report (a merged one names its original)."""
        original = None
        if report.status == S.MERGED and report.duplicate_of is not None:
            original = (await repo.by_ids(session, [report.duplicate_of])).get(
                report.duplicate_of)
        return status_text(self.texts, self.classifier, ZoneInfo(self.settings.timezone),
                           report, original)

    # -- the one place that writes a status -----------------------------------------------

    async def _step(
        self, session: AsyncSession, report: Report, target: ReportStatus, actor: Actor, *,
        note: str | None = None, audit: str | None = None, before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None, audit_note: str | None = None,
    ) -> None:
        current = report.status
        check(current, target)
        if report.id is None:
            session.add(report)
            await session.flush([report])  # its id for the history row; the rest at commit
        now = utcnow()
        report.status = target
        report.updated_at = now
        if target == S.SUBMITTED:
            report.submitted_at = now
        elif target == S.CONFIRMED:
            report.confirmed_at = now
        elif target in (S.RESOLVED, S.REJECTED) and current != S.DRAFT:
            report.resolved_at = now  # closed (a cancelled draft never opened)
        session.add(report)
        session.add(ReportHistory(report_id=report.id or 0, status=target, note=note,
                                  source=actor.source, at=now))
        if actor.source == "operator":
            session.add(OperatorAction(
                report_id=report.id, operator_id=actor.operator_id,
                action=audit or str(target), before={"status": current, **(before or {})},
                after={"status": str(target), **(after or {})}, note=audit_note, at=now))
        log.info("report status changed", extra={"code": report.code, "from": current,
                                                 "to": str(target), "by": actor.source})

    @staticmethod
    def _set_agency(report: Report, agency: str | None) -> None:
        if agency:
            report.agency = agency[:255]


def status_text(texts: Texts, classifier: Any | None, tz: ZoneInfo, report: Report,
                original: Report | None = None) -> str:
    """The status line `dialog.status_line` of a report, with the sector's name."""
    sector = report.sector or "chưa phân loại"
    if classifier is not None and report.sector in classifier.sectors:
        sector = classifier.sectors[report.sector].name
    agency = report.agency or DEFAULT_AGENCY
    if report.status == S.MERGED:
        status = texts.get("status.merged", original=original.code if original else "…",
                           agency=agency)
    else:
        status = texts.get(f"status.{report.status}", agency=agency)
    return texts.get("dialog.status_line", code=report.code, sector=sector, status=status,
                     updated=local_time(tz, report.updated_at))


def local_time(tz: ZoneInfo, when: datetime | None) -> str:
    """A UTC time shown in the province's time zone (Asia/Ho_Chi_Minh)."""
    return when.astimezone(tz).strftime("%H:%M %d/%m/%Y") if when is not None else ""


async def queue_rating(session: AsyncSession, report: Report) -> bool:
    """Queue the second delivery of a rated report (`rating:<code>`); the caller commits."""
    if report.rating is None or report.code is None:
        return False
    key = f"rating:{report.code}"
    if await repo.outbox_key_taken(session, key):
        return False
    session.add(Outbox(kind="forward", report_id=report.id,
                       payload={"code": report.code, "type": "rating"}, dedup_key=key))
    return True
