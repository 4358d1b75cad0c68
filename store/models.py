"""SQLModel tables (DESIGN §4). Times are stored as UTC and always come back timezone-aware.

Schema changes go through Alembic (`store/migrations`); `paht db upgrade` applies them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC (SQLite keeps no zone; PostgreSQL keeps the value)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a table model (for Core statements: bulk inserts, updates, upserts)."""
    # SQLModel sets __table__ when the class is created but does not declare it for typing.
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    return table


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


def _now_ts(index: bool = False) -> Any:
    return Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime(), nullable=False, index=index)
    )


def _new_dict() -> dict[str, Any]:
    return {}


def _new_list() -> list[Any]:
    return []


def _json(default: type[dict[str, Any]] | type[list[Any]] = list) -> Any:
    # Plain Python factories, not the `dict`/`list` builtins: pydantic inspects a factory's
    # signature on every instantiation, and for a builtin that costs a parse (~0.2 ms).
    factory = _new_dict if default is dict else _new_list
    return Field(default_factory=factory, sa_column=sa.Column(sa.JSON(), nullable=False))


# Statuses --------------------------------------------------------------------------------

EVENT_PENDING = "pending"
EVENT_PROCESSING = "processing"
EVENT_DONE = "done"
EVENT_IGNORED = "ignored"
EVENT_PARKED = "parked"  # failed too often; kept with its error, does not block others



class ReportStatus(StrEnum):
    """Where a report is in its life cycle; only `gateway.domain.lifecycle` moves it.

    MERGED is a duplicate linked to its original (`duplicate_of`): neither rejected nor closed
    for its citizen, who follows the original's progress. The column stays a plain string
    (varchar 16), so adding a member needs no migration.
    """

    DRAFT = "draft"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FORWARDED = "forwarded"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    REJECTED = "rejected"
    MERGED = "merged"


REPORT_STATUSES: tuple[str, ...] = tuple(ReportStatus)  # draft first (the console skips it)


class InboundEvent(SQLModel, table=True):
    """Every accepted provider message, raw, unique on (channel, external_id)."""

    __tablename__ = "inbound_event"
    __table_args__ = (
        sa.UniqueConstraint("channel", "external_id", name="uq_inbound_channel_external"),
        sa.Index("ix_inbound_status_next", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    external_id: str = Field(max_length=255)
    sender: str = Field(max_length=255, index=True)
    received_at: datetime = _now_ts()
    accepted_at: datetime = _now_ts()
    message: dict[str, Any] = _json(dict)  # the InboundMessage, serialised (raw included)
    status: str = Field(default=EVENT_PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = _now_ts()
    claimed_by: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    processed_at: datetime | None = _ts()
    report_id: int | None = Field(default=None, foreign_key="report.id", index=True)


class Citizen(SQLModel, table=True):
    """One person across channels."""

    id: int | None = Field(default=None, primary_key=True)
    display_name: str | None = Field(default=None, max_length=255)
    phone: str | None = Field(default=None, max_length=32, unique=True)  # E.164
    consent_share_identity: bool = False  # agencies see a pseudonym unless True
    abuse_flags: int = 0
    created_at: datetime = _now_ts()


class Identity(SQLModel, table=True):
    """A channel address of a citizen: telegram:<id>, zalo:<uid>, facebook:<psid>, tel:+84..."""

    id: int | None = Field(default=None, primary_key=True)
    urn: str = Field(max_length=255, unique=True)
    channel: str = Field(max_length=16)
    citizen_id: int = Field(foreign_key="citizen.id", index=True)
    created_at: datetime = _now_ts()
    last_inbound_at: datetime | None = _ts()


class Report(SQLModel, table=True):
    """The common report record, whatever channel it came from."""

    id: int | None = Field(default=None, primary_key=True)
    code: str | None = Field(default=None, max_length=32, unique=True)  # PA-2611-000123
    channel: str = Field(max_length=16, index=True)
    citizen_id: int = Field(foreign_key="citizen.id", index=True)
    sender: str = Field(max_length=255)
    text: str = Field(default="", sa_column=sa.Column(sa.Text(), nullable=False, default=""))
    transcript: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    transcript_confidence: float | None = None
    attachments: list[dict[str, Any]] = _json(list)
    lat: float | None = None
    lon: float | None = None
    address: str | None = Field(default=None, max_length=500)
    sector: str | None = Field(default=None, max_length=32, index=True)
    score: float | None = None
    runner_up: str | None = Field(default=None, max_length=32)
    matches: list[dict[str, Any]] = _json(list)
    needs_review: bool = True
    agency: str | None = Field(default=None, max_length=255)
    status: str = Field(default=ReportStatus.DRAFT, max_length=16, index=True)
    urgent: bool = False
    flags: list[str] = _json(list)  # abusive, spam, silent_audio, ...
    duplicate_of: int | None = Field(default=None, foreign_key="report.id")
    # The trust gate (migration 0004): why an operator must look, and the likely original of
    # a duplicate held for review.
    review_reasons: list[str] = _json(list)
    suspected_duplicate_of: int | None = Field(default=None, foreign_key="report.id")
    central_ref: str | None = Field(default=None, max_length=64)
    # The console (migration 0006): the operator who took the report in hand, and when.
    assigned_to: int | None = Field(default=None, foreign_key="operator.id", index=True)
    assigned_at: datetime | None = _ts()
    rating: int | None = None
    # The voice hotline (migration 0007): the sector the caller chose on the keypad, and the
    # machine transcript kept when an operator corrected it.
    sector_by_caller: str | None = Field(default=None, max_length=32)
    # Text, transcript and address without diacritics, lower case (migration 0008), kept by
    # the gateway on every save so that a search typed without marks finds them.
    search_text: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    transcript_machine: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    transcript_corrected_at: datetime | None = _ts()
    created_at: datetime = _now_ts(index=True)
    submitted_at: datetime | None = _ts(index=True)
    confirmed_at: datetime | None = _ts()
    resolved_at: datetime | None = _ts()
    updated_at: datetime = _now_ts()


class ReportHistory(SQLModel, table=True):
    """Status changes and notes of a report, in order (the citizen-visible history)."""

    __tablename__ = "report_history"
    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="report.id", index=True)
    at: datetime = _now_ts()
    status: str = Field(max_length=16)
    note: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    # citizen | classifier | operator | central | gateway (lifecycle.Actor.source)
    source: str = Field(default="gateway", max_length=32)


class Classification(SQLModel, table=True):
    """What the classifier said about a report (one row per run)."""

    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="report.id", index=True)
    sector: str = Field(max_length=32)
    score: float
    runner_up: str | None = Field(default=None, max_length=32)
    runner_up_score: float = 0.0
    needs_review: bool = True
    urgent: bool = False
    matches: list[dict[str, Any]] = _json(list)
    created_at: datetime = _now_ts()


class Operator(SQLModel, table=True):
    """A console account."""

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    display_name: str | None = Field(default=None, max_length=255)
    password_hash: str = Field(max_length=255)
    role: str = Field(default="operator", max_length=16)  # operator | supervisor | admin
    active: bool = True
    failed_logins: int = 0
    locked_until: datetime | None = _ts()
    created_at: datetime = _now_ts()


class OperatorAction(SQLModel, table=True):
    """Who did what to which report, with the before and after (the audit log)."""

    __tablename__ = "operator_action"
    id: int | None = Field(default=None, primary_key=True)
    report_id: int | None = Field(default=None, foreign_key="report.id", index=True)
    operator_id: int | None = Field(default=None, foreign_key="operator.id", index=True)
    action: str = Field(max_length=32)  # confirm | change_sector | merge | reject | reply | ...
    before: dict[str, Any] = _json(dict)
    after: dict[str, Any] = _json(dict)
    note: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    at: datetime = _now_ts(index=True)


class Outbox(SQLModel, table=True):
    """A pending delivery: a reply to a citizen, a notification, or a forward to the centre."""

    __table_args__ = (sa.Index("ix_outbox_status_next", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # reply | notify | forward
    channel: str | None = Field(default=None, max_length=16)
    recipient: str | None = Field(default=None, max_length=255, index=True)
    report_id: int | None = Field(default=None, foreign_key="report.id", index=True)
    payload: dict[str, Any] = _json(dict)
    dedup_key: str | None = Field(default=None, max_length=128, unique=True)
    # pending | sent | dead | held (window closed, no phone) | fallback (went by SMS instead)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = _now_ts()
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    provider_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = _now_ts(index=True)
    sent_at: datetime | None = _ts()


class Conversation(SQLModel, table=True):
    """The dialog state of one citizen on one channel (survives restarts)."""

    id: int | None = Field(default=None, primary_key=True)
    sender: str = Field(max_length=255, unique=True)
    channel: str = Field(max_length=16)
    citizen_id: int = Field(foreign_key="citizen.id")
    report_id: int | None = Field(default=None, foreign_key="report.id")
    state: str = Field(default="idle", max_length=24)  # idle|collecting|confirming|rating
    asked: list[str] = _json(list)  # what the bot already asked for this draft (asked once)
    last_activity_at: datetime = _now_ts()
    expires_at: datetime | None = _ts(index=True)
    lang: str = Field(default="vi", max_length=8)  # vi | en: the language the citizen writes
    options: list[str] = _json(list)  # payloads of the last numbered buttons ("1" -> [0])
    memo: dict[str, Any] = _json(dict)  # dialog scratch: split parts, emergency report id


class DutyAlert(SQLModel, table=True):
    """An emergency the duty officer must see now (the console shows and pushes open ones)."""

    __tablename__ = "duty_alert"
    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="report.id", index=True)
    hazard: str = Field(max_length=32)  # fire | trapped | electric | drowning | gas | ...
    numbers: list[str] = _json(list)  # the numbers the citizen was told to call
    channel: str = Field(max_length=16)
    created_at: datetime = _now_ts(index=True)
    acknowledged_at: datetime | None = _ts()
    acknowledged_by: int | None = Field(default=None, foreign_key="operator.id")


class AlertPush(SQLModel, table=True):
    """One push of a duty alert or reminder to an outside target (Telegram group, e-mail);
    unique on `key` ("alert:<id>:telegram"), so each is sent once (migration 0006)."""

    __tablename__ = "alert_push"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=128, unique=True)
    target: str = Field(max_length=16)  # telegram | email
    status: str = Field(default="pending", max_length=16)  # pending | sent | dead
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    created_at: datetime = _now_ts()
    sent_at: datetime | None = _ts()


class CallbackRequest(SQLModel, table=True):
    """A hotline caller an operator must call back (after hours, no answer, not understood)
    (migration 0007)."""

    __tablename__ = "callback_request"
    id: int | None = Field(default=None, primary_key=True)
    report_id: int | None = Field(default=None, foreign_key="report.id", index=True)
    call_sid: str = Field(max_length=64, unique=True)
    caller: str = Field(max_length=255)  # tel:+84… or call:<CallSid>
    reason: str = Field(max_length=32)  # after_hours | no_operator | not_ready | asked
    created_at: datetime = _now_ts(index=True)
    called_back_at: datetime | None = _ts()
    called_back_by: int | None = Field(default=None, foreign_key="operator.id")
    note: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))


class TrackingCounter(SQLModel, table=True):
    """Monotonic sequence per period for tracking codes (never reused)."""

    __tablename__ = "tracking_counter"
    period: str = Field(primary_key=True, max_length=8)
    value: int = 0


class Credential(SQLModel, table=True):
    """Rotating provider credentials (Zalo's token pair), replaced with optimistic locking."""

    key: str = Field(primary_key=True, max_length=64)
    value: dict[str, Any] = _json(dict)
    version: int = 0
    updated_at: datetime = _now_ts()
