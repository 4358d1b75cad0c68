"""Reads and writes of the voice hotline: the event a call's recording became, call-back
requests and their "called back" mark. Channel names and reasons come in as arguments.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import CallbackRequest, InboundEvent, Report, utcnow


async def event_of(session: AsyncSession, channel: str, external_id: str) -> InboundEvent | None:
    """The stored event `(channel, external_id)`, e.g. a call's recording by RecordingSid."""
    stmt = select(InboundEvent).where(InboundEvent.channel == channel,
                                      InboundEvent.external_id == external_id)
    return (await session.exec(stmt)).first()


async def latest_stream_event(session: AsyncSession, channel: str, sender: str,
                              since: datetime) -> InboundEvent | None:
    """The newest live-stream event ("stream:…") of `sender` accepted after `since`."""
    stmt = (select(InboundEvent)
            .where(InboundEvent.channel == channel, InboundEvent.sender == sender,
                   col(InboundEvent.external_id).startswith("stream:"),
                   InboundEvent.accepted_at >= since)
            .order_by(col(InboundEvent.id).desc()).limit(1))
    return (await session.exec(stmt)).first()


async def report_of_event(session: AsyncSession, event: InboundEvent) -> Report | None:
    """The report an event joined, once the worker has processed it."""
    if event.report_id is None:
        return None
    return await session.get(Report, event.report_id)


async def request_callback(session: AsyncSession, call_sid: str, caller: str, reason: str,
                           report_id: int | None = None) -> CallbackRequest:
    """One call-back request per call (a repeated request returns the first); commits."""
    stmt = select(CallbackRequest).where(CallbackRequest.call_sid == call_sid)
    found = (await session.exec(stmt)).first()
    if found is not None:
        if report_id and found.report_id is None:
            found.report_id = report_id
            session.add(found)
            await session.commit()
        return found
    item = CallbackRequest(call_sid=call_sid, caller=caller, reason=reason, report_id=report_id)
    session.add(item)
    try:
        await session.commit()
    except IntegrityError:  # Twilio retried the request concurrently: the first one stands
        await session.rollback()
        return (await session.exec(stmt)).one()
    return item


async def callbacks(session: AsyncSession, *, open_only: bool = True,
                    limit: int = 200) -> list[CallbackRequest]:
    """Call-back requests, open ones (oldest first, the order to call) or all (newest first)."""
    stmt = select(CallbackRequest)
    if open_only:
        stmt = stmt.where(col(CallbackRequest.called_back_at).is_(None)).order_by(
            col(CallbackRequest.created_at), col(CallbackRequest.id))
    else:
        stmt = stmt.order_by(col(CallbackRequest.created_at).desc(),
                             col(CallbackRequest.id).desc())
    return list((await session.exec(stmt.limit(limit))).all())


async def mark_called_back(session: AsyncSession, callback_id: int, operator_id: int,
                           note: str | None = None,
                           at: datetime | None = None) -> CallbackRequest | None:
    """Mark a request as called back (the caller commits); None when unknown or already done."""
    item = await session.get(CallbackRequest, callback_id)
    if item is None or item.called_back_at is not None:
        return None
    item.called_back_at = at or utcnow()
    item.called_back_by = operator_id
    item.note = note or item.note
    session.add(item)
    return item
