"""Store behaviour that must hold on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from store.db import create_engine, session_factory
from store.models import Citizen, Identity, InboundEvent, Report, utcnow
from store.repos import citizens as citizens_repo
from store.repos import codes as codes_repo
from store.repos import credentials as credentials_repo
from store.repos import events as events_repo


@pytest.fixture
async def sessions(db_url: str):
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


def _row(external_id: str, sender: str = "telegram:42", channel: str = "telegram") -> dict:
    return {
        "channel": channel,
        "external_id": external_id,
        "sender": sender,
        "received_at": utcnow(),
        "message": {"channel": channel, "external_id": external_id, "sender": sender,
                    "text": "Đèn đường hỏng", "received_at": utcnow().isoformat()},
    }


async def test_insert_events_ignores_redelivery(sessions) -> None:
    async with sessions() as s:
        first = await events_repo.insert_events(s, [_row("1"), _row("2")])
        await s.commit()
    async with sessions() as s:
        again = await events_repo.insert_events(s, [_row("2"), _row("3")])
        await s.commit()
    assert all(isinstance(i, int) for i in first)
    assert again[0] is None and isinstance(again[1], int)
    async with sessions() as s:
        count = (await s.exec(select(sa.func.count()).select_from(InboundEvent))).one()
    assert count == 3


async def test_same_external_id_on_two_channels_are_two_events(sessions) -> None:
    async with sessions() as s:
        ids = await events_repo.insert_events(s, [_row("7"), _row("7", channel="zalo")])
        await s.commit()
    assert None not in ids


async def test_claim_leases_and_reclaims_after_expiry(sessions) -> None:
    async with sessions() as s:
        await events_repo.insert_events(s, [_row("a"), _row("b")])
        await s.commit()
    async with sessions() as s:
        claimed = await events_repo.claim_events(s, "w1", 10, timedelta(seconds=60))
    assert [e.external_id for e in claimed] == ["a", "b"]
    async with sessions() as s:
        assert await events_repo.claim_events(s, "w2", 10, timedelta(seconds=60)) == []
    # A worker that died leaves its lease to expire; another worker then takes the events.
    async with sessions() as s:
        await s.exec(sa.update(InboundEvent.__table__).values(
            next_attempt_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    async with sessions() as s:
        again = await events_repo.claim_events(s, "w2", 10, timedelta(seconds=60))
    assert {e.external_id for e in again} == {"a", "b"}
    assert all(e.attempts == 2 and e.claimed_by == "w2" for e in again)


async def test_concurrent_claims_never_share_an_event(sessions) -> None:
    async with sessions() as s:
        await events_repo.insert_events(
            s, [_row(str(i), sender=f"telegram:{i}") for i in range(40)])
        await s.commit()

    async def claimer(name: str) -> list[int]:
        got: list[int] = []
        while True:
            async with sessions() as s:
                batch = await events_repo.claim_events(s, name, 3, timedelta(seconds=60))
            if not batch:
                return got
            got.extend(e.id for e in batch)

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(4)))
    flat = [i for r in results for i in r]
    assert len(flat) == 40 and len(set(flat)) == 40


async def test_failed_event_is_parked_after_max_attempts(sessions) -> None:
    async with sessions() as s:
        (event_id,) = await events_repo.insert_events(s, [_row("poison")])
        await s.commit()
    async with sessions() as s:
        status = await events_repo.fail_event(s, event_id, "boom", attempts=1, max_attempts=3)
        assert status == "pending"
        status = await events_repo.fail_event(s, event_id, "boom", attempts=3, max_attempts=3)
        assert status == "parked"
        event = await s.get(InboundEvent, event_id)
        await s.refresh(event)
        assert event.status == "parked" and event.last_error == "boom"


async def test_tracking_codes_are_unique_under_concurrency(sessions) -> None:
    when = utcnow()

    async def one() -> str:
        async with sessions() as s:
            code = await codes_repo.next_tracking_code(s, "PA", when)
            await s.commit()
            return code

    codes = await asyncio.gather(*(one() for _ in range(30)))
    assert len(set(codes)) == 30
    period = when.strftime("%y%m")
    assert sorted(codes)[0] == f"PA-{period}-000001"
    assert sorted(codes)[-1] == f"PA-{period}-000030"


async def test_phone_links_identities_across_channels(sessions) -> None:
    async with sessions() as s:
        tg = await citizens_repo.resolve_citizen(s, "telegram:1", "telegram", display_name="Lan")
        s.add(Report(channel="telegram", citizen_id=tg.id, sender="telegram:1"))
        await s.commit()
    async with sessions() as s:
        sms = await citizens_repo.resolve_citizen(s, "tel:+84905123456", "sms",
                                                  phone="+84905123456")
        await s.commit()
    assert sms.id != tg.id
    # The Telegram user shares the same phone: both identities are now one citizen.
    async with sessions() as s:
        linked = await citizens_repo.resolve_citizen(s, "telegram:1", "telegram",
                                                     phone="+84905123456")
        await s.commit()
        assert linked.id == sms.id
        urns = {i.urn for i in await citizens_repo.identities_of(s, linked.id)}
        assert urns == {"telegram:1", "tel:+84905123456"}
        report = (await s.exec(select(Report))).one()
        assert report.citizen_id == sms.id
        assert (await s.exec(select(Identity).where(Identity.citizen_id == tg.id))).first() is None
        assert (await s.get(Citizen, sms.id)).display_name in (None, "Lan")


async def test_token_store_replaces_atomically(sessions) -> None:
    store = credentials_repo.DbTokenStore(sessions)
    assert await store.get("zalo") is None
    assert await store.put("zalo", {"access_token": "a1"}, None) is True
    assert await store.put("zalo", {"access_token": "a-other"}, None) is False
    current = await store.get("zalo")
    assert current == {"access_token": "a1", "_version": 1}
    assert await store.put("zalo", {"access_token": "a2"}, 1) is True
    # A second process that read version 1 loses the race instead of overwriting.
    assert await store.put("zalo", {"access_token": "a3"}, 1) is False
    assert (await store.get("zalo"))["access_token"] == "a2"


async def test_times_come_back_in_utc(sessions) -> None:
    async with sessions() as s:
        (event_id,) = await events_repo.insert_events(s, [_row("tz")])
        await s.commit()
    async with sessions() as s:
        event = await s.get(InboundEvent, event_id)
        assert event.accepted_at.tzinfo is not None
        assert event.accepted_at.utcoffset() == timedelta(0)


async def test_a_citizens_later_message_waits_while_another_worker_claims_the_first(
        pg_url: str) -> None:
    """PostgreSQL with several workers: while worker A is claiming a citizen's first message
    (its row locked, A not committed yet), worker B must not take that citizen's second one."""
    from tests.conftest import _truncate_pg

    _truncate_pg(pg_url)
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as s:
            first, second = await events_repo.insert_events(s, [_row("a"), _row("b")])
            await events_repo.insert_events(s, [_row("c", sender="telegram:7")])
            await s.commit()
        t = InboundEvent.__table__
        async with sessions() as a:  # worker A in the middle of its claim: e1 locked
            await a.execute(sa.select(t.c.id).where(t.c.id == first).with_for_update())
            async with sessions() as b:
                got = await events_repo.claim_events(b, "B", 10, timedelta(seconds=60))
            # B takes the other citizen's message, never the locked citizen's second one.
            assert [e.external_id for e in got] == ["c"]
            await a.rollback()
        async with sessions() as b:
            got = await events_repo.claim_events(b, "B", 10, timedelta(seconds=60))
        assert [e.id for e in got] == [first, second]  # both, in order, to one worker
    finally:
        await engine.dispose()
