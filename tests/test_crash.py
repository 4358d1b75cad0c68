"""Kill -9 the real server right after acknowledged messages; the restart loses nothing.

Runs `paht serve` as a subprocess on a free port with its own SQLite file, posts a bounded
burst of signed web-chat messages, SIGKILLs the server as soon as the last answer arrived,
restarts it, and checks that every acknowledged message is stored exactly once and processed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import aiohttp
import pytest

from channels.web import session_token
from tests.server_support import await_ready, free_port, start_gateway

SECRET = "crash-test-secret"
pytestmark = pytest.mark.slow


def _start(tmp: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "PAHT_DATABASE_URL": f"sqlite:///{tmp / 'paht.db'}",
        "PAHT_VAR_DIR": str(tmp / "var"),
        "PAHT_SESSION_SECRET": SECRET,
        "PAHT_WORKER_LEASE_SECONDS": "1",
        "PAHT_LOG_LEVEL": "WARNING",
        **env,
    }
    return start_gateway(tmp, port, environ)


def _events(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT external_id, status FROM inbound_event").fetchall()


async def _burst(port: int, count: int) -> list[str]:
    acked: list[str] = []

    async def one(http: aiohttp.ClientSession, n: int) -> None:
        sid = f"crashsession{n:08d}"
        body = {"sid": sid, "token": session_token(SECRET, sid), "id": "m1",
                "text": f"Đèn đường số {n} không sáng ở kiệt {n} Hùng Vương"}
        async with http.post(f"http://127.0.0.1:{port}/webhooks/web",
                             data=json.dumps(body, ensure_ascii=False).encode()) as r:
            if r.status == 200:
                acked.append(f"{sid}:m1")

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(one(http, n) for n in range(count)))
    return acked


@pytest.mark.parametrize("workers", ["false", "true"], ids=["backlog", "in-flight"])
async def test_sigkill_after_ack_loses_nothing(tmp_path: Path, workers: str) -> None:
    port = free_port()
    proc = _start(tmp_path, port, PAHT_RUN_WORKERS=workers)
    try:
        await await_ready(port)
        acked = await _burst(port, 60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert len(acked) == 60
    stored = _events(tmp_path / "paht.db")
    assert sorted(e for e, _ in stored) == sorted(acked)  # each acked message exactly once
    if workers == "false":
        assert {s for _, s in stored} == {"pending"}

    proc = _start(tmp_path, port)
    try:
        await await_ready(port)
        for _ in range(300):
            statuses = [s for _, s in _events(tmp_path / "paht.db")]
            if all(s in ("done", "ignored") for s in statuses):
                break
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    stored = _events(tmp_path / "paht.db")
    assert len(stored) == 60
    assert {s for _, s in stored} == {"done"}
    with sqlite3.connect(tmp_path / "paht.db") as conn:
        reports = conn.execute("SELECT count(*), count(DISTINCT sender) FROM report").fetchone()
    assert reports == (60, 60)
