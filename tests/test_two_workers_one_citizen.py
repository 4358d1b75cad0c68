"""Two worker processes on one PostgreSQL database, one citizen writing fast: one draft.

Each Worker has its own engine (as two `paht worker` processes would). The second message's
transaction waits for the first (the citizen's identity row is updated by both, and the
conversation row is read FOR UPDATE), so it joins the draft the first one created instead of
opening another; a lost race on creating a new citizen rolls back whole and is retried.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sqlmodel import select

from gateway.keys import SERVICES
from gateway.services import Services
from gateway.workers.pipeline import Worker
from store.db import create_engine, session_factory
from store.models import Conversation, InboundEvent, Report, table_of, utcnow
from store.repos import citizens as citizens_repo
from store.repos import events as events_repo


async def test_two_workers_share_one_draft(settings_factory, gateway_client, pg_url) -> None:
    from tests.conftest import _truncate_pg

    _truncate_pg(pg_url)
    client = await gateway_client(settings_factory(database_url=pg_url, review_policy="all"))
    base: Services = client.app[SERVICES]
    sender = "telegram:777"
    rows = []
    for n, text in enumerate(["Đèn đường hỏng", "ở kiệt 52 Hùng Vương, phường Phú Hội"]):
        message = {"channel": "telegram", "external_id": f"u{n}", "sender": sender,
                   "text": text, "received_at": utcnow().isoformat(), "kind": "message"}
        rows.append({"channel": "telegram", "external_id": f"u{n}", "sender": sender,
                     "received_at": utcnow(), "message": message})
    async with base.sessions() as s:
        # The citizen has written before: identity and (idle) conversation exist.
        citizen = await citizens_repo.resolve_citizen(s, sender, "telegram")
        s.add(Conversation(sender=sender, channel="telegram", citizen_id=citizen.id))
        await events_repo.insert_events(s, rows)
        await s.commit()

    engines = [create_engine(pg_url) for _ in range(2)]
    try:
        workers = []
        for engine in engines:
            services = Services(settings=base.settings, sessions=session_factory(engine),
                                texts=base.texts, metrics=base.metrics,
                                channels=base.channels, classifier=base.classifier)
            workers.append(Worker(services))

        async def one_each(worker: Worker) -> None:
            async with worker.s.sessions() as s:
                events = await events_repo.claim_events(s, worker.name, 1, worker.lease)
            for event in events:
                await worker._one(event)

        await asyncio.gather(*(one_each(w) for w in workers))
        # The second message may have lost a race on creating the citizen's identity: its
        # transaction rolled back whole and the event waits for a retry. Make it due now.
        async with base.sessions() as s:
            await s.exec(sa.update(table_of(InboundEvent))
                         .where(table_of(InboundEvent).c.status == "pending")
                         .values(next_attempt_at=utcnow()))
            await s.commit()
        for _ in range(3):
            for w in workers:
                await w.run_once()
    finally:
        for engine in engines:
            await engine.dispose()

    async with base.sessions() as s:
        reports = (await s.exec(select(Report))).all()
    assert len(reports) == 1
    assert "Đèn đường hỏng" in reports[0].text and "Hùng Vương" in reports[0].text
    async with base.sessions() as s:
        statuses = [e.status for e in (await s.exec(select(InboundEvent))).all()]
    assert statuses == ["done", "done"]
