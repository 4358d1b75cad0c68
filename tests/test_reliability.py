"""Kill -9 the real server in the middle of continuous mixed-channel load; nothing acked is lost.

`paht serve` runs as a subprocess with every channel enabled (bench secrets, providers'
APIs pointed at a dead port). A client keeps posting validly signed Facebook, Zalo, Telegram,
Twilio SMS and web-chat webhooks on 16 connections; once a third of them are acknowledged the
server is SIGKILLed while requests are in flight. Then it restarts, the "providers" redeliver
everything that got no 2xx (as they do), and the workers drain the queue. Checked: every
message that received a 2xx before the kill was stored (exactly once: the table is unique on
(channel, external_id) and the count per id is asserted), after redelivery every message is
stored exactly once, and every event ends processed (done/ignored), none parked or stuck.
Bounded in count (240 requests) and time (every wait has a cap); no timing assertions.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from bench.common import CHANNELS, external_id, free_port, server_env, signed
from store.db import sync_url
from tests.server_support import await_ready, start_gateway

pytestmark = pytest.mark.slow
TOTAL = 240
KILL_AFTER = 80  # acknowledged requests before the SIGKILL


def _start(tmp: Path, url: str, port: int, workers: bool) -> subprocess.Popen[bytes]:
    env = server_env(url, tmp / "var", workers=workers, PAHT_WORKER_LEASE_SECONDS="1",
                     PAHT_WORKER_POLL_SECONDS="0.2")
    return start_gateway(tmp, port, env)


def _rows(url: str) -> list[tuple[str, str, str]]:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(  # type: ignore[misc]
                "SELECT channel, external_id, status FROM inbound_event"))]
    finally:
        engine.dispose()


Request = tuple[int, str, str, dict[str, str], bytes]


def _requests(run: str) -> list[Request]:
    out = []
    for n in range(TOTAL):
        channel = CHANNELS[n % len(CHANNELS)]
        path, headers, body = signed(channel, run, n, n % 40)
        out.append((n, channel, path, headers, body))
    return out


async def _drive(port: int, requests: list[Request], proc: subprocess.Popen[bytes] | None,
                 kill_after: int | None) -> set[int]:
    """Post on 16 connections; SIGKILL `proc` once `kill_after` answers were 2xx."""
    acked: set[int] = set()
    queue: asyncio.Queue[Request] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    killed = asyncio.Event()

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            n, _, path, headers, body = queue.get_nowait()
            try:
                async with http.post(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers=headers) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        acked.add(n)
                    else:
                        assert resp.status == 503, resp.status
            except (TimeoutError, aiohttp.ClientError):
                if killed.is_set():
                    continue
                raise
            if kill_after is not None and proc is not None and len(acked) >= kill_after \
                    and not killed.is_set():
                killed.set()
                proc.send_signal(signal.SIGKILL)  # requests of the other 15 are in flight

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=16, force_close=False)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        await asyncio.gather(*(worker(http) for _ in range(16)))
    return acked


@pytest.mark.parametrize(("backend", "workers"), [
    ("sqlite", True), ("sqlite", False), ("postgresql", True),
], ids=["sqlite-workers", "sqlite-ingest-only", "postgresql-workers"])
async def test_sigkill_under_mixed_load(tmp_path: Path, request: pytest.FixtureRequest,
                                        backend: str, workers: bool) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'paht.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        engine = sa.create_engine(sync_url(url))
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE inbound_event, outbox, report_history, "
                                 "classification, operator_action, conversation, identity, "
                                 "report, citizen RESTART IDENTITY CASCADE"))
        engine.dispose()
    run = uuid.uuid4().hex[:10]
    requests = _requests(run)
    ids = {n: (ch, external_id(ch, run, n, n % 40)) for n, ch, *_ in requests}
    port = free_port()
    proc = _start(tmp_path, url, port, workers)
    try:
        await await_ready(port, proc)
        acked = await _drive(port, requests, proc, KILL_AFTER)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert KILL_AFTER <= len(acked) < TOTAL  # the kill really happened mid-load
    stored = Counter((ch, ext) for ch, ext, _ in _rows(url))
    assert all(stored[ids[n]] == 1 for n in acked), "an acknowledged message was lost"
    assert max(stored.values()) == 1

    proc = _start(tmp_path, url, port, True)
    try:
        await await_ready(port, proc)
        # The providers redeliver what got no 2xx (and some that did: duplicates are no-ops).
        redeliver = [r for r in requests if r[0] not in acked] + requests[:10]
        again = await _drive(port, redeliver, None, None)
        assert again == {r[0] for r in redeliver}
        rows: list[tuple[str, str, str]] = []
        for _ in range(600):  # at most about a minute
            rows = _rows(url)
            if len(rows) == TOTAL and all(s in ("done", "ignored", "parked") for *_, s in rows):
                break
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    stored = Counter((ch, ext) for ch, ext, _ in rows)
    assert set(stored) == set(ids.values()) and set(stored.values()) == {1}
    statuses = Counter(s for *_, s in rows)
    assert set(statuses) <= {"done", "ignored"}, statuses


def test_bench_environment_enables_every_channel(tmp_path: Path) -> None:
    """The harness: server_env enables every channel the load mixes (no 404s above)."""
    env = server_env("sqlite://", tmp_path, workers=False)
    from gateway.settings import Settings

    os_env = {k: v for k, v in env.items() if k.startswith("PAHT_")}
    old = dict(os.environ)
    try:
        os.environ.update(os_env)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
    finally:
        os.environ.clear()
        os.environ.update(old)
    from channels.registry import channel_class

    for name in CHANNELS:
        assert channel_class(name).enabled(settings), name
