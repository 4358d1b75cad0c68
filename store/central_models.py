"""Tables of the forwarding side (issue 8): the embedded central store and callback dedup.

`central_report` / `central_rating` are what the `database` sink writes — the "central PAHT
store" of a single-machine install (or of `PAHT_FORWARD_DATABASE_URL`), keyed by our tracking
code so a retried delivery is an insert-or-ignore. `central_status_event` remembers every
status event the central system sent us (callback `event_id`), so a replay is a no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from store.models import _now_ts, _ts, table_of


class CentralReport(SQLModel, table=True):
    """A report as the central store received it (one row per tracking code)."""

    __tablename__ = "central_report"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    sector: str | None = Field(default=None, max_length=32)
    agency: str | None = Field(default=None, max_length=255)
    description: str = Field(default="", sa_column=sa.Column(sa.Text(), nullable=False))
    lat: float | None = None
    lon: float | None = None
    address: str | None = Field(default=None, max_length=500)
    media: list[Any] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    citizen: dict[str, Any] = Field(default_factory=dict,
                                    sa_column=sa.Column(sa.JSON(), nullable=False))
    channel: str | None = Field(default=None, max_length=16)
    urgent: bool = False
    duplicate_of: str | None = Field(default=None, max_length=32)  # the original's code (0004)
    submitted_at: datetime | None = _ts()
    received_at: datetime = _now_ts()


class CentralRating(SQLModel, table=True):
    """A citizen's rating of the handling, as the central store received it."""

    __tablename__ = "central_rating"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    rating: int
    received_at: datetime = _now_ts()


class CentralStatusEvent(SQLModel, table=True):
    """A status event from the central system (callback or poll), unique on event_id."""

    __tablename__ = "central_status_event"
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=128, unique=True)
    code: str = Field(max_length=32, index=True)
    status: str = Field(max_length=16)
    note: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    agency: str | None = Field(default=None, max_length=255)
    source: str = Field(default="callback", max_length=16)  # callback | poll
    received_at: datetime = _now_ts()


CENTRAL_TABLES = (table_of(CentralReport), table_of(CentralRating))  # what a sink DB needs
