"""Faults: no 200 for an unsaved message, retries where the policy says, poison parked.

- Database gone: PostgreSQL on a dead port, PostgreSQL dropping away mid-run behind a local TCP
  proxy (and back), backends killed with pg_terminate_backend; SQLite disk full (SQLite's
  max_page_count everywhere; a real 1 MB tmpfs when running as root) and a read-only database
  (a tmpfs remounted read-only, root only). Webhooks answer 503 + Retry-After, /readyz 503,
  every 200 is a stored row, and the gateway recovers by itself.
- Outbound sends: SendError(retryable, retry_after), non-retryable, closed window, unknown
  exceptions and a real HTTP timeout against a stalling Graph API are retried or given up
  exactly as gateway/workers/outbox.py's policy says.
- A poisoned event under the real Worker loop with several senders: parked with its error
  after worker_max_attempts, everyone else (its own sender's later messages too) processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import event
from sqlalchemy.engine import make_url

from bench.common import channel_settings, external_id, signed
from channels.base import Channel, InboundMessage, OutboundMessage, SendError, SendResult
from channels.facebook import FacebookChannel
from gateway.keys import ENGINE, INGESTOR, SERVICES
from gateway.workers.outbox import OutboxSender
from gateway.workers.pipeline import Worker
from store.models import InboundEvent, Outbox, utcnow

# -- helpers -------------------------------------------------------------------------------------


async def _post(client: Any, channel: str, run: str, n: int) -> int:
    path, headers, body = signed(channel, run, n, n % 50)
    async with client.post(path, data=body, headers=headers) as resp:
        if resp.status == 503:
            assert resp.headers.get("Retry-After")
        return resp.status


async def _stored_ids(client: Any) -> set[str]:
    async with client.app[SERVICES].sessions() as session:
        rows = await session.exec(sa.select(InboundEvent.__table__.c.external_id))
        return {r[0] for r in rows.all()}


def _external_id(channel: str, run: str, n: int) -> str:
    return external_id(channel, run, n, n % 50)


async def _ready(client: Any) -> int:
    async with client.get("/readyz") as resp:
        return resp.status


# -- PostgreSQL --------------------------------------------------------------------------------


async def test_postgresql_unreachable_503_and_not_ready(settings_factory: Any,
                                                        gateway_client: Any) -> None:
    client = await gateway_client(settings_factory(
        **channel_settings(), database_url="postgresql://postgres@127.0.0.1:1/nowhere"))
    run = uuid.uuid4().hex[:8]
    for n, channel in enumerate(("telegram", "zalo", "facebook", "sms", "web")):
        assert await _post(client, channel, run, n) == 503
    assert await _ready(client) == 503


class TcpProxy:
    """A loopback TCP proxy to PostgreSQL that can be cut (every connection reset) and restored."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    async def cut(self) -> None:
        """Stop listening and reset every open connection (the database 'went away')."""
        if self.server is not None:
            self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)
        self.server = None


async def test_postgresql_going_away_and_coming_back(pg_url: str, settings_factory: Any,
                                                     gateway_client: Any) -> None:
    url = make_url(pg_url)
    proxy = TcpProxy(url.port or 5432)
    await proxy.start()
    via = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    client = await gateway_client(settings_factory(**channel_settings(), database_url=via))
    run = uuid.uuid4().hex[:8]
    acked: set[str] = set()
    channels = ("telegram", "zalo", "facebook", "sms", "web")
    try:
        for n in range(10):
            channel = channels[n % 5]
            assert await _post(client, channel, run, n) == 200
            acked.add(_external_id(channel, run, n))
        await proxy.cut()
        for n in range(10, 20):
            assert await _post(client, channels[n % 5], run, n) == 503
        assert await _ready(client) == 503
        await proxy.start()  # the same port: the pool reconnects by itself (pre-ping)
        statuses = []
        for n in range(20, 40):
            channel = channels[n % 5]
            status = await _post(client, channel, run, n)
            statuses.append(status)
            if status == 200:
                acked.add(_external_id(channel, run, n))
        assert statuses[-10:] == [200] * 10
        assert await _ready(client) == 200
    finally:
        await proxy.cut()
    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as conn:
        stored = {r[0] for r in conn.execute("SELECT external_id FROM inbound_event")}
    assert acked <= stored  # every 200 is durable
    assert not {_external_id(channels[n % 5], run, n) for n in range(10, 20)} & stored


async def test_postgresql_backends_killed(pg_url: str, settings_factory: Any,
                                          gateway_client: Any) -> None:
    client = await gateway_client(settings_factory(**channel_settings(), database_url=pg_url))
    run = uuid.uuid4().hex[:8]
    assert await _post(client, "telegram", run, 0) == 200
    name = make_url(pg_url).database
    with psycopg.connect(pg_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchone()
    assert killed and killed[0] >= 1
    statuses = [await _post(client, "telegram", run, n) for n in range(1, 6)]
    assert set(statuses) <= {200, 503} and statuses[-1] == 200
    stored = await _stored_ids(client)
    ok = {_external_id("telegram", run, n) for n, s in zip(range(1, 6), statuses, strict=True)
          if s == 200}
    assert ok <= stored and _external_id("telegram", run, 0) in stored


# -- SQLite: disk full and read-only ---------------------------------------------------------


async def test_sqlite_disk_full_503_then_recovers(settings_factory: Any,
                                                  gateway_client: Any) -> None:
    client = await gateway_client(settings_factory(**channel_settings()))
    engine = client.app[ENGINE]
    run = uuid.uuid4().hex[:8]
    assert await _post(client, "telegram", run, 0) == 200

    def cap(dbapi_conn: Any, _record: Any) -> None:  # "the disk is full": no page beyond these
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA page_count")
        pages = cur.fetchone()[0]
        cur.execute(f"PRAGMA max_page_count = {pages}")
        cur.close()

    event.listen(engine.sync_engine, "connect", cap)
    await engine.dispose()
    acked, refused = set(), 0
    for n in range(1, 3000):
        status = await _post(client, "telegram", run, n)
        if status == 200:
            acked.add(_external_id("telegram", run, n))
        else:
            assert status == 503
            refused += 1
            if refused >= 5:
                break
    assert refused >= 5, "the database never filled up"
    assert await _ready(client) == 503
    event.remove(engine.sync_engine, "connect", cap)
    await engine.dispose()
    assert await _post(client, "telegram", run, 5000) == 200  # space again: it recovers
    assert await _ready(client) == 200
    assert acked <= await _stored_ids(client)


def _root_tmpfs(path: Path, size: str) -> bool:
    if shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def tmpfs(tmp_path: Path) -> Any:
    """A small tmpfs (root only); skipped where mounting is not allowed."""
    mnt = tmp_path / "tmpfs"
    if not _root_tmpfs(mnt, "3m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_real_full_disk_503(tmpfs: Path, settings_factory: Any, gateway_client: Any,
                                  sqlite_template: Path) -> None:
    db = tmpfs / "paht.db"
    shutil.copy(sqlite_template, db)
    filler = tmpfs / "filler"
    settings = settings_factory(**channel_settings(), database_url=f"sqlite:///{db}")
    client = await gateway_client(settings)
    run = uuid.uuid4().hex[:8]
    assert await _post(client, "zalo", run, 0) == 200
    # Fill what is left of the 3 MB, leaving no room for the WAL to grow.
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    acked, refused = set(), 0
    for n in range(1, 2000):
        status = await _post(client, "zalo", run, n)
        if status == 200:
            acked.add(_external_id("zalo", run, n))
        else:
            assert status == 503
            refused += 1
            if refused >= 3:
                break
    assert refused >= 3
    assert await _ready(client) == 503
    filler.unlink()
    await client.app[ENGINE].dispose()
    assert await _post(client, "zalo", run, 9999) == 200
    assert acked <= await _stored_ids(client)


async def test_read_only_database_503(tmpfs: Path, settings_factory: Any, gateway_client: Any,
                                      sqlite_template: Path) -> None:
    db = tmpfs / "paht.db"
    shutil.copy(sqlite_template, db)
    client = await gateway_client(settings_factory(**channel_settings(),
                                                   database_url=f"sqlite:///{db}"))
    run = uuid.uuid4().hex[:8]
    assert await _post(client, "facebook", run, 0) == 200
    await client.app[ENGINE].dispose()  # checkpoint and close: the file is complete on its own
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    try:
        statuses = {await _post(client, "facebook", run, n) for n in range(1, 6)}
        assert statuses == {503}
        assert await _ready(client) == 503
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
    await client.app[ENGINE].dispose()
    assert await _post(client, "facebook", run, 7) == 200
    stored = await _stored_ids(client)
    assert _external_id("facebook", run, 0) in stored and _external_id("facebook", run, 7) in stored
    assert not {_external_id("facebook", run, n) for n in range(1, 6)} & stored


# -- outbound sends --------------------------------------------------------------------------


class Scripted(Channel):
    """A channel whose send does whatever the test scripted."""

    name = "scripted"

    def __init__(self, outcome: BaseException | None) -> None:
        super().__init__(None)
        self.outcome = outcome
        self.calls = 0

    async def send(self, message: OutboundMessage) -> SendResult:
        self.calls += 1
        if self.outcome is not None:
            raise self.outcome
        return SendResult(provider_id="p-1")


async def _queue_one(services: Any, channel: str, recipient: str) -> int:
    async with services.sessions() as session:
        await services.lifecycle.notifier.queue(
            session, channel=channel, recipient=recipient,
            text="Trung tâm đã nhận phản ánh của anh/chị")
        await session.commit()
        row = (await session.exec(sa.select(Outbox).order_by(Outbox.id.desc()))).first()
        return int(row[0].id)


async def _row(services: Any, row_id: int) -> Outbox:
    async with services.sessions() as session:
        row = await session.get(Outbox, row_id)
        assert row is not None
        return row


@pytest.mark.parametrize(("outcome", "status", "delay"), [
    (None, "sent", None),
    (SendError("429 slow down", retryable=True, retry_after=37), "pending", (37, 37)),
    (SendError("5xx", retryable=True), "pending", (1, 3)),  # back-off, first attempt
    (SendError("blocked by user", retryable=False), "dead", None),
    (SendError("window", retryable=False, window_closed=True), "held", None),
    (TimeoutError(), "pending", (1, 3)),
    (RuntimeError("provider SDK bug"), "pending", (1, 3)),
], ids=["ok", "retry-after", "retryable", "permanent", "window", "timeout", "unknown"])
async def test_outbox_follows_the_retry_policy(settings_factory: Any, gateway_client: Any,
                                               outcome: BaseException | None, status: str,
                                               delay: tuple[float, float] | None) -> None:
    client = await gateway_client(settings_factory())
    services = client.app[SERVICES]
    channel = Scripted(outcome)
    services.channels["scripted"] = channel
    row_id = await _queue_one(services, "scripted", "scripted:1")
    before = utcnow()
    assert await OutboxSender(services).run_once() == 1
    row = await _row(services, row_id)
    assert (row.status, row.attempts, channel.calls) == (status, 1, 1)
    if outcome is not None:
        assert row.last_error is not None
    if delay is not None:
        wait = (row.next_attempt_at.replace(tzinfo=before.tzinfo) - before).total_seconds()
        assert delay[0] - 1 <= wait <= delay[1] + 1
    assert await OutboxSender(services).run_once() == 0  # not due again yet


async def test_outbox_gives_up_after_max_attempts(settings_factory: Any,
                                                  gateway_client: Any) -> None:
    client = await gateway_client(settings_factory(outbox_max_attempts=3))
    services = client.app[SERVICES]
    channel = Scripted(SendError("503", retryable=True))
    services.channels["scripted"] = channel
    row_id = await _queue_one(services, "scripted", "scripted:1")
    for _ in range(10):
        async with services.sessions() as session:
            await session.exec(sa.update(Outbox.__table__).values(next_attempt_at=utcnow()))
            await session.commit()
        if not await OutboxSender(services).run_once():
            break
    row = await _row(services, row_id)
    assert (row.status, row.attempts, channel.calls) == ("dead", 3, 3)


async def test_outbox_real_http_timeout_is_retried(settings_factory: Any,
                                                   gateway_client: Any) -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"message_id": "late"})

    graph = web.Application()
    graph.router.add_post("/me/messages", stall)
    server = TestServer(graph)
    await server.start_server()
    settings = settings_factory(**{**channel_settings(),
                                   "graph_api_base": str(server.make_url("")).rstrip("/")})
    client = await gateway_client(settings)
    services = client.app[SERVICES]
    timeout = aiohttp.ClientTimeout(total=0.5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        services.channels["facebook"] = FacebookChannel.from_settings(settings, http=http)
        row_id = await _queue_one(services, "facebook", "facebook:42")
        assert await OutboxSender(services).run_once() == 1
    release.set()
    await server.close()
    row = await _row(services, row_id)
    assert row.status == "pending" and "graph unreachable" in (row.last_error or "")
    assert row.next_attempt_at.replace(tzinfo=None) > utcnow().replace(tzinfo=None)


# -- a poisoned event under the real worker --------------------------------------------------


async def test_poisoned_event_is_parked_and_blocks_nobody(settings_factory: Any,
                                                          gateway_client: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.domain.dialog import Dialog

    client = await gateway_client(settings_factory(worker_max_attempts=3,
                                                   worker_poll_seconds=0.05))
    services = client.app[SERVICES]
    real = Dialog.handle

    async def handle(self: Dialog, session: Any, msg: InboundMessage, *a: Any, **k: Any) -> Any:
        if "POISON" in msg.text:
            raise ValueError("poisoned: the pipeline cannot take this event")
        return await real(self, session, msg, *a, **k)

    monkeypatch.setattr(Dialog, "handle", handle)
    now = utcnow()
    messages = []
    for n in range(15):
        sender = f"web:sender{n % 5:012d}"
        text = "POISON" if n == 5 else f"Rác thải ùn ứ ở chợ số {n}"
        messages.append(InboundMessage("web", f"p{n}", sender, text,
                                       now + timedelta(seconds=n)))
    await client.app[INGESTOR].accept(messages)
    stop = asyncio.Event()
    task = asyncio.create_task(Worker(services).run(stop))
    try:
        for _ in range(400):  # bounded: about 20 s at most
            async with services.sessions() as session:
                t = InboundEvent.__table__
                # Skip the back-off instead of sleeping through it.
                await session.exec(sa.update(t).where(t.c.status == "pending", t.c.attempts > 0)
                                   .values(next_attempt_at=utcnow()))
                await session.commit()
                rows = (await session.exec(sa.select(t.c.external_id, t.c.status, t.c.attempts,
                                                     t.c.last_error))).all()
            services.worker_wake.set()
            if all(r[1] in ("done", "ignored", "parked") for r in rows):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        services.worker_wake.set()
        await asyncio.wait_for(task, 10)
    by_id = {r[0]: r for r in rows}
    assert by_id["p5"][1] == "parked" and by_id["p5"][2] == 3
    assert "poisoned" in by_id["p5"][3]
    assert {r[1] for i, r in by_id.items() if i != "p5"} <= {"done", "ignored"}
    assert by_id["p10"][1] in ("done", "ignored")  # the poisoned sender's later message
