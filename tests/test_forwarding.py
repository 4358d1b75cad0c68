"""Forwarding (issue 8): sinks against real local servers, back-off and dead letters, the
outage test (nothing lost, everything exactly once after recovery), and two forwarders on one
PostgreSQL database never delivering a row twice."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from gateway.ops.privacy import pseudonym
from gateway.workers.forwarder import Forwarder, queue_new_ratings
from store.central_models import CentralRating, CentralReport
from store.db import create_engine, session_factory, sync_url
from store.forward import dead_letters, requeue_dead
from store.models import Outbox, Report, ReportHistory

try:
    from tests.fakes.central import (
        API_KEY,
        SECRET,
        FakeCentral,
        clean_central_tables,
        make_due,
        make_services,
        reset_pg,
        seed_report,
    )
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from fakes.central import (  # type: ignore[no-redef]
        API_KEY,
        SECRET,
        FakeCentral,
        clean_central_tables,
        make_due,
        make_services,
        reset_pg,
        seed_report,
    )


@pytest.fixture
async def central(aiohttp_server: Any) -> Any:
    state = FakeCentral()
    server = await aiohttp_server(state.app())
    state.base = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    yield state
    state.release()


@pytest.fixture
async def make(settings_factory: Any) -> Any:
    made: list[Any] = []

    def build(**overrides: Any) -> Any:
        services = make_services(settings_factory(**overrides))
        made.append(services)
        return services

    yield build
    for services in made:
        await services.engine.dispose()


async def rows(services: Any, model: Any) -> list[Any]:
    async with services.sessions() as session:
        return list((await session.exec(select(model))).all())


def webhook(make: Any, central: Any, **kw: Any) -> Any:
    return make(forward_sink="webhook", forward_url=f"{central.base}/webhook",
                forward_secret=SECRET, **kw)


# --- database sink ----------------------------------------------------------------------

async def test_database_sink_delivers_once(make: Any, db_url: str) -> None:
    clean_central_tables(db_url)
    services = make(database_url=db_url)
    for n in (1, 2, 3):
        await seed_report(services, n)
    forwarder = Forwarder(services)
    try:
        assert await forwarder.run_until_idle() == 3
        assert await forwarder.run_until_idle() == 0
        # a crash after delivery and before commit re-delivers: insert-or-ignore keeps one
        async with services.sessions() as session:
            t = Outbox.__table__
            await session.exec(sa.update(t).where(t.c.dedup_key == "forward:PA-2611-000001")
                               .values(status="pending"))
            await session.commit()
        await make_due(services)
        assert await forwarder.run_until_idle() == 1
    finally:
        await forwarder.close()
    central_rows = await rows(services, CentralReport)
    assert sorted(r.code for r in central_rows) == [f"PA-2611-{n:06d}" for n in (1, 2, 3)]
    first = next(r for r in central_rows if r.code == "PA-2611-000001")
    assert first.citizen == {"pseudonym": pseudonym(1, "test-session-secret")}  # citizen 1
    assert first.sector == "ha_tang_do_thi" and first.lat == pytest.approx(16.4637)
    reports = await rows(services, Report)
    assert {r.status for r in reports} == {"forwarded"}
    assert all(r.central_ref and r.central_ref.startswith("DB-") for r in reports)
    history = await rows(services, ReportHistory)
    assert sum(h.status == "forwarded" for h in history) == 3
    notes = [o for o in await rows(services, Outbox) if o.kind == "notify"]
    assert len(notes) == 3
    assert "đã được chuyển đến Sở Xây dựng" in notes[0].payload["text"]
    assert notes[0].channel == "telegram"


async def test_separate_central_database(make: Any, tmp_path: Any) -> None:
    other = f"sqlite:///{tmp_path / 'central.db'}"
    services = make(forward_database_url=other)
    await seed_report(services, 7, consent=True, phone="+84905123456")
    forwarder = Forwarder(services)
    await forwarder.run_until_idle()
    await forwarder.close()
    engine = create_engine(other)
    async with session_factory(engine)() as session:
        (got,) = (await session.exec(select(CentralReport))).all()
    await engine.dispose()
    assert got.code == "PA-2611-000007"
    assert got.citizen["name"] == "Nguyễn Văn An" and got.citizen["phone"] == "+84905123456"
    assert await rows(services, CentralReport) == []


# --- webhook and Open311 sinks ------------------------------------------------------------

async def test_webhook_signed_with_idempotency_key(make: Any, central: Any) -> None:
    services = webhook(make, central)
    await seed_report(services, 1)
    forwarder = Forwarder(services)
    await forwarder.run_until_idle()
    await forwarder.close()
    (req,) = central.requests
    assert req["key"] == "PA-2611-000001"
    expected = hmac.new(SECRET.encode(), req["body"], hashlib.sha256).hexdigest()
    assert req["signature"] == f"sha256={expected}"
    body = json.loads(req["body"])
    assert body["type"] == "report" and body["citizen"].keys() == {"pseudonym"}
    assert "Nguyễn" not in req["body"].decode()
    (report,) = await rows(services, Report)
    assert report.status == "forwarded" and report.central_ref == "5001"


async def test_webhook_wrong_secret_is_parked(make: Any, central: Any) -> None:
    services = make(forward_sink="webhook", forward_url=f"{central.base}/webhook",
                    forward_secret="not-the-shared-secret")
    await seed_report(services, 1)
    forwarder = Forwarder(services)
    await forwarder.run_until_idle()
    await forwarder.close()
    async with services.sessions() as session:
        (dead,) = await dead_letters(session)
    assert dead.attempts == 1 and "401" in (dead.last_error or "")
    assert central.records == {}


async def test_open311_sink_stores_service_request_id(make: Any, central: Any) -> None:
    services = make(forward_sink="open311", forward_url=f"{central.base}/open311",
                    forward_api_key=API_KEY)
    await seed_report(services, 1, attachments=[{"kind": "image", "path": "2611/a.jpg"}])
    await seed_report(services, 2, lat=None, lon=None, address="52 Hùng Vương, Huế")
    forwarder = Forwarder(services)
    await forwarder.run_until_idle()
    await forwarder.close()
    first, second = (r["form"] for r in central.requests)
    assert first["api_key"] == API_KEY and first["service_code"] == "ha_tang_do_thi"
    assert (first["lat"], first["long"]) == ("16.4637", "107.5909")
    assert first["media_url"].startswith("http://gateway.test/media/2611/a.jpg?exp=")
    assert "&sig=" in first["media_url"]
    assert first["account_id"].startswith("CD-")
    assert second["address_string"] == "52 Hùng Vương, Huế" and "lat" not in second
    reports = sorted(await rows(services, Report), key=lambda r: r.id)
    assert [r.central_ref for r in reports] == ["5001", "5002"]


# --- outages, back-off, dead letters ----------------------------------------------------

@pytest.mark.parametrize("failure", ["500", "timeout", "drop"])
async def test_outage_loses_nothing_and_delivers_once(make: Any, central: Any,
                                                      failure: str) -> None:
    """The central system is down for a while; reports keep coming; then it recovers."""
    services = webhook(make, central, forward_timeout_seconds=0.2, forward_max_attempts=50)
    forwarder = Forwarder(services)
    central.mode = failure
    for n in range(1, 4):
        await seed_report(services, n)
    for round_ in range(4):  # four failed rounds, a new report arriving in each
        await seed_report(services, 10 + round_)
        await make_due(services)
        await forwarder.run_until_idle()
    outbox = [o for o in await rows(services, Outbox) if o.kind == "forward"]
    assert len(outbox) == 7 and {o.status for o in outbox} == {"pending"}
    assert all(o.last_error for o in outbox)
    assert {r.status for r in await rows(services, Report)} == {"confirmed"}
    central.mode = "ok"
    await make_due(services)
    await forwarder.run_until_idle()
    await forwarder.run_until_idle()
    await forwarder.close()
    expected = sorted(f"PA-2611-{n:06d}" for n in (1, 2, 3, 10, 11, 12, 13))
    assert sorted(central.keys()) == expected  # each exactly once
    ok_posts = [r for r in central.requests[-7:]]
    assert sorted(r["key"] for r in ok_posts) == expected  # no repeat after recovery
    assert {r.status for r in await rows(services, Report)} == {"forwarded"}
    assert {o.status for o in await rows(services, Outbox) if o.kind == "forward"} == {"sent"}


async def test_parked_after_max_attempts_then_requeued(make: Any, central: Any) -> None:
    services = webhook(make, central, forward_max_attempts=3)
    central.mode = "500"
    await seed_report(services, 1)
    forwarder = Forwarder(services)
    for _ in range(5):
        await make_due(services)
        await forwarder.run_until_idle()
    async with services.sessions() as session:
        (dead,) = await dead_letters(session)
    assert dead.attempts == 3 and dead.status == "dead" and "HTTP 500" in dead.last_error
    assert len(central.requests) == 3
    central.mode = "ok"
    async with services.sessions() as session:
        assert await requeue_dead(session, dead.id)
        await session.commit()
    await forwarder.run_until_idle()
    await forwarder.close()
    assert central.keys() == ["PA-2611-000001"]


async def test_rejected_payload_is_parked_at_once(make: Any, central: Any) -> None:
    services = webhook(make, central)
    central.mode = "reject"
    await seed_report(services, 1)
    forwarder = Forwarder(services)
    await forwarder.run_until_idle()
    await forwarder.close()
    async with services.sessions() as session:
        (dead,) = await dead_letters(session)
    assert dead.attempts == 1


# --- ratings -------------------------------------------------------------------------------

async def test_rating_is_a_second_delivery(make: Any, db_url: str) -> None:
    clean_central_tables(db_url)
    services = make(database_url=db_url)
    # Confirmed (its forward row is queued) and rated: both deliveries go out.
    await seed_report(services, 1, rating=4, central_ref="DB-1")
    assert await queue_new_ratings(services) == 1
    assert await queue_new_ratings(services) == 0  # dedup "rating:<code>"
    forwarder = Forwarder(services)
    await forwarder.run_until_idle()
    await forwarder.close()
    (rating,) = await rows(services, CentralRating)
    assert (rating.code, rating.rating) == ("PA-2611-000001", 4)
    keys = sorted(o.dedup_key for o in await rows(services, Outbox) if o.kind == "forward")
    assert keys == ["forward:PA-2611-000001", "rating:PA-2611-000001"]


# --- several processes on one PostgreSQL ---------------------------------------------------

FORWARDER_SCRIPT = """
import asyncio, sys
sys.path.insert(0, sys.argv[4])
from fakes.central import make_services
from gateway.workers.forwarder import Forwarder
from gateway.settings import Settings

async def main():
    settings = Settings(_env_file=None, database_url=sys.argv[1], forward_sink="webhook",
                        forward_url=sys.argv[2], forward_secret=sys.argv[3],
                        session_secret="test-session-secret", var_dir=sys.argv[5])
    services = make_services(settings)
    forwarder = Forwarder(services, batch=3)
    total = 0
    while (got := await forwarder.run_once()):
        total += got
    await forwarder.close()
    await services.engine.dispose()
    print(total)

asyncio.run(main())
"""


async def test_two_processes_never_deliver_a_row_twice(make: Any, pg_url: str, central: Any,
                                                       tmp_path: Any) -> None:
    """Two gateway processes share one PostgreSQL: SKIP LOCKED + leases split the rows."""
    import sys
    from pathlib import Path

    reset_pg(pg_url)
    services = make(database_url=pg_url)
    for n in range(1, 41):
        await seed_report(services, n)
    central.delay = 0.01  # slow answers keep both processes busy at the same time
    args = [pg_url, f"{central.base}/webhook", SECRET, str(Path(__file__).parent),
            str(tmp_path)]
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", FORWARDER_SCRIPT, *args, stdout=asyncio.subprocess.PIPE)
        for _ in range(2)]
    outputs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    counts = [int(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    print("per-process deliveries", counts)
    assert sum(counts) == 40
    assert len(central.requests) == 40  # not one POST twice
    assert sorted(central.keys()) == sorted(f"PA-2611-{n:06d}" for n in range(1, 41))
    assert {r.status for r in await rows(services, Report)} == {"forwarded"}
    assert len([o for o in await rows(services, Outbox) if o.kind == "notify"]) == 40


# --- the migration ------------------------------------------------------------------------------

def test_migration_0002_up_and_down(tmp_path: Any, pg_url: str) -> None:
    """0002 applies and reverts on SQLite and on a fresh PostgreSQL database."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    from store import migrate

    u = make_url(pg_url)
    name = f"paht_mig_{uuid.uuid4().hex[:8]}"
    conninfo = {"host": u.host, "port": u.port or 5432, "user": u.username,
                "dbname": u.database, "autocommit": True}
    with psycopg.connect(**conninfo) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    urls = [f"sqlite:///{tmp_path / 'm.db'}", u.set(database=name).render_as_string(False)]
    try:
        for url in urls:
            migrate.upgrade(url)
            engine = sa.create_engine(sync_url(url))
            with engine.connect() as conn:
                tables = set(sa.inspect(conn).get_table_names())
            assert {"central_report", "central_rating", "central_status_event"} <= tables
            migrate.downgrade(url, "0001")
            with engine.connect() as conn:
                assert "central_report" not in sa.inspect(conn).get_table_names()
            migrate.upgrade(url)
            engine.dispose()
    finally:
        with psycopg.connect(**conninfo) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
