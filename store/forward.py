"""Forwarding to the central PAHT store: the sink contract, signing, and the dead letters.

A sink receives plain data (a JSON-ready dict built by `gateway.workers.forwarder`) and either
returns a `Delivered` or raises `DeliveryError` carrying its retry policy. Every delivery
carries an idempotency key (our tracking code; `<code>:rating` for a rating), so a retry after
a crash or a timeout never creates a second record on the central side.

Payload types: `{"type": "report", "code", "sector", "agency", "description", "lat", "lon",
"address", "media": [url], "channel", "urgent", "citizen": {...}, "submitted_at",
"duplicate_of"}` (`duplicate_of`: the original's tracking code, or null), `{"type": "link",
…the same fields}` (a report merged into `duplicate_of`, sent when the original is already at
the centre; key `<code>:link`) and `{"type": "rating", "code", "rating", "central_ref"}`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import Outbox, table_of

SIGNATURE_HEADER = "X-PAHT-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class Delivered:
    """The central side accepted a payload; `central_ref` is its id for the record, if any."""

    central_ref: str | None = None
    duplicate: bool = False  # the central side already had it (a retried delivery)


class DeliveryError(Exception):
    """A delivery failed; `retryable` says whether trying again later can help."""

    def __init__(self, message: str, *, retryable: bool = True, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Sink(Protocol):
    """Where confirmed reports and ratings go."""

    name: str

    async def deliver(self, payload: dict[str, Any]) -> Delivered:
        """Deliver one payload (idempotent on `idempotency_key(payload)`)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def idempotency_key(payload: dict[str, Any]) -> str:
    """The tracking code for a report, `<code>:rating` for its rating."""
    code = str(payload["code"])
    return code if payload.get("type", "report") == "report" else f"{code}:{payload['type']}"


def sign(body: bytes, secret: str) -> str:
    """`sha256=<hex>` HMAC-SHA256 of the raw body (the X-PAHT-Signature header value)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """Constant-time check of a `sha256=<hex>` signature header."""
    if not header or not secret:
        return False
    # Bytes, not str: compare_digest raises on non-ASCII text, and a forged header may be any.
    return hmac.compare_digest(header.strip().lower().encode("utf-8", "replace"),
                               sign(body, secret).encode())


async def dead_letters(session: AsyncSession, limit: int = 100) -> list[Outbox]:
    """Forward rows parked after too many failures (newest first), for supervisors."""
    table = table_of(Outbox)
    stmt = (
        sa.select(Outbox)
        .where(table.c.kind == "forward", table.c.status == "dead")
        .order_by(table.c.id.desc())
        .limit(limit)
    )
    return list((await session.exec(stmt)).scalars().all())  # type: ignore[call-overload]


async def requeue_dead(session: AsyncSession, outbox_id: int) -> bool:
    """Put a dead forward row back in the queue (attempts reset); the caller commits."""
    from store.models import utcnow

    table = table_of(Outbox)
    result = await session.exec(
        sa.update(table)
        .where(table.c.id == outbox_id, table.c.kind == "forward", table.c.status == "dead")
        .values(status="pending", attempts=0, next_attempt_at=utcnow(), last_error=None)
        .returning(table.c.id)
    )
    return result.first() is not None
