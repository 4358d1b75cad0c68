"""Shared bench plumbing: signed webhook requests, a lean load generator, servers, databases.

The load generator is a raw HTTP/1.1 keep-alive client on asyncio streams, run in its own
process (so its CPU is not the gateway's event loop) with every request signed *before* the
clock starts: the measured cost is the server's, not the client's HMACs. Requests are the
fixture bodies of tests/fixtures/<channel>/ with fresh provider ids, signed exactly as each
provider signs (Meta HMAC-SHA256, Zalo mac=sha256(app_id+body+ts+secret), Telegram secret
header, Twilio X-Twilio-Signature, web chat session token). Everything is loopback-only and
bounded in count and time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
PUBLIC = "https://paht.bench.example"  # what the providers sign (Twilio signs the URL)
DEAD_API = "http://127.0.0.1:9"  # outbound sends fail fast: no provider is reachable

FB_SECRET = "bench-facebook-app-secret"
ZALO_APP_ID = "360846524940903967"
ZALO_OA_SECRET = "bench-zalo-oa-secret"
TG_SECRET = "bench-telegram-secret"
TW_TOKEN = "bench-twilio-auth-token-0123456789"
TW_SID = "AC" + "0" * 31 + "1"
WEB_SECRET = "bench-session-secret"
CHANNELS = ("facebook", "zalo", "telegram", "sms", "web")


def server_env(database_url: str, var_dir: Path, *, workers: bool, **extra: str) -> dict[str, str]:
    """The gateway's environment: every channel enabled with bench secrets, no real provider."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PAHT_")},
        "PAHT_DATABASE_URL": database_url,
        "PAHT_VAR_DIR": str(var_dir),
        "PAHT_PUBLIC_BASE_URL": PUBLIC,
        "PAHT_SESSION_SECRET": WEB_SECRET,
        "PAHT_RUN_WORKERS": "true" if workers else "false",
        "PAHT_LOG_LEVEL": "WARNING",
        "PAHT_FACEBOOK_APP_SECRET": FB_SECRET,
        "PAHT_FACEBOOK_VERIFY_TOKEN": "bench-verify",
        "PAHT_FACEBOOK_PAGE_TOKEN": "bench-page-token",
        "PAHT_GRAPH_API_BASE": DEAD_API,
        "PAHT_ZALO_APP_ID": ZALO_APP_ID,
        "PAHT_ZALO_APP_SECRET": "bench-zalo-app-secret",
        "PAHT_ZALO_OA_SECRET": ZALO_OA_SECRET,
        "PAHT_ZALO_ACCESS_TOKEN": "bench-zalo-token",
        "PAHT_ZALO_API_BASE": DEAD_API,
        "PAHT_ZALO_OAUTH_BASE": DEAD_API,
        "PAHT_TELEGRAM_TOKEN": "123456:bench-token",
        "PAHT_TELEGRAM_SECRET": TG_SECRET,
        "PAHT_TELEGRAM_API_BASE": DEAD_API,
        "PAHT_TWILIO_ACCOUNT_SID": TW_SID,
        "PAHT_TWILIO_AUTH_TOKEN": TW_TOKEN,
        "PAHT_TWILIO_NUMBER": "+14155550100",
        "PAHT_TWILIO_API_BASE": DEAD_API,
        # One load generator on one address speaks for thousands of citizens: the web chat's
        # per-IP limit (meant for browsers) would refuse most of its messages.
        "PAHT_RATE_LIMIT_CHAT_PER_IP": "0",
        "PAHT_RATE_LIMIT_CHAT_PER_SESSION": "0",
        **extra,
    }


def channel_settings() -> dict[str, str]:
    """The same channel secrets as Settings keyword arguments (for in-process tests)."""
    env = server_env("sqlite://", Path("."), workers=False)
    skip = {"PAHT_DATABASE_URL", "PAHT_VAR_DIR", "PAHT_RUN_WORKERS", "PAHT_LOG_LEVEL"}
    return {k[5:].lower(): v for k, v in env.items() if k.startswith("PAHT_") and k not in skip}


def _fixture(channel: str, name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / channel / name).read_text(encoding="utf-8"))


_FB = _fixture("facebook", "text.json")["body"]
_ZALO = _fixture("zalo", "text.json")["body"]
_TG = _fixture("telegram", "text.json")
_SMS = _fixture("sms", "text_valid.json")["params"]


def signed(channel: str, run: str, n: int, sender: int) -> tuple[str, dict[str, str], bytes]:
    """One unique, validly signed webhook request: (path, headers, body)."""
    now_ms = int(time.time() * 1000)
    text = f"Phản ánh {n}: nước ngập sâu ở đường số {sender}, xe máy chết máy hàng loạt"
    if channel == "facebook":
        body_obj = json.loads(json.dumps(_FB))
        event = body_obj["entry"][0]["messaging"][0]
        event["sender"]["id"] = str(6_785_432_100_000_000 + sender)
        event["timestamp"] = now_ms
        event["message"] = {"mid": f"m_bench_{run}_{n}", "text": text}
        body = json.dumps(body_obj, ensure_ascii=True).encode()  # Meta escapes non-ASCII
        sig = "sha256=" + hmac.new(FB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return "/webhooks/facebook", {"Content-Type": "application/json",
                                      "X-Hub-Signature-256": sig}, body
    if channel == "zalo":
        body_obj = {**_ZALO, "sender": {"id": str(2_468_458_835_000_000_000 + sender)},
                    "message": {"msg_id": f"bench{run}{n}", "text": text},
                    "timestamp": str(now_ms)}
        body = json.dumps(body_obj, ensure_ascii=False, separators=(",", ":")).encode()
        mac = hashlib.sha256(
            (ZALO_APP_ID + body.decode() + str(now_ms) + ZALO_OA_SECRET).encode()
        ).hexdigest()
        return "/webhooks/zalo", {"Content-Type": "application/json",
                                  "X-ZEvent-Signature": f"mac={mac}"}, body
    if channel == "telegram":
        chat = 500_000_000 + sender
        msg = {**_TG["message"], "message_id": n + 1, "date": now_ms // 1000, "text": text,
               "chat": {**_TG["message"]["chat"], "id": chat},
               "from": {**_TG["message"]["from"], "id": chat}}
        update_id = int(hashlib.sha256(f"{run}:{n}".encode()).hexdigest()[:12], 16)
        body = json.dumps({"update_id": update_id, "message": msg}, ensure_ascii=False).encode()
        return "/webhooks/telegram", {"Content-Type": "application/json",
                                      "X-Telegram-Bot-Api-Secret-Token": TG_SECRET}, body
    if channel == "sms":
        from channels.twilio_common import sign

        sid = "SM" + hashlib.sha256(f"{run}:{n}".encode()).hexdigest()[:32]
        params = {**_SMS, "MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid,
                  "AccountSid": TW_SID, "From": f"+8490{sender:07d}", "Body": text}
        path = "/webhooks/twilio/sms"
        body = urlencode(list(params.items())).encode()
        return path, {"Content-Type": "application/x-www-form-urlencoded",
                      "X-Twilio-Signature": sign(TW_TOKEN, PUBLIC + path, params)}, body
    if channel == "web":
        from channels.web import session_token

        sid = f"benchsession{sender:010d}"
        body = json.dumps({"sid": sid, "token": session_token(WEB_SECRET, sid),
                           "id": f"b{run[:8]}{n}", "text": text}, ensure_ascii=False).encode()
        return "/webhooks/web", {"Content-Type": "application/json"}, body
    raise ValueError(channel)


def external_id(channel: str, run: str, n: int, sender: int) -> str:
    """The provider id the gateway stores for `signed(channel, run, n, sender)`."""
    if channel == "facebook":
        return f"m_bench_{run}_{n}"
    if channel == "zalo":
        return f"bench{run}{n}"
    if channel == "telegram":
        return str(int(hashlib.sha256(f"{run}:{n}".encode()).hexdigest()[:12], 16))
    if channel == "sms":
        return "SM" + hashlib.sha256(f"{run}:{n}".encode()).hexdigest()[:32]
    if channel == "web":
        return f"benchsession{sender:010d}:b{run[:8]}{n}"
    raise ValueError(channel)


def http_request(port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """The exact bytes of one keep-alive HTTP/1.1 POST."""
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def build_requests(port: int, count: int, *, senders: int = 500,
                   channels: tuple[str, ...] = CHANNELS, run: str | None = None) -> list[bytes]:
    """`count` signed requests round-robin over `channels` from `senders` distinct citizens."""
    run = run or uuid.uuid4().hex[:10]
    return [http_request(port, *signed(channels[n % len(channels)], run, n, n % senders))
            for n in range(count)]


# -- the load generator ----------------------------------------------------------------------

async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:].strip())
    if length:
        await reader.readexactly(length)
    return status


async def _load(port: int, requests: list[bytes], rate: float | None, connections: int,
                max_seconds: float) -> dict[str, Any]:
    """Open loop at `rate` req/s (latency counted from the scheduled send time, so queueing
    in the server counts) or, with rate None, closed loop over `connections` connections."""
    queue: asyncio.Queue[tuple[bytes, float | None] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    deadline = time.perf_counter() + max_seconds

    async def conn() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                item = queue.get_nowait() if rate is None and not queue.empty() else (
                    None if rate is None else await queue.get())
                if item is None:
                    return
                data, scheduled = item
                sent = time.perf_counter()
                try:
                    writer.write(data)
                    status = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - (scheduled or sent))
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    start = time.perf_counter()
    if rate is None:
        for data in requests:
            queue.put_nowait((data, None))
    tasks = [asyncio.create_task(conn()) for _ in range(connections)]
    if rate is not None:
        for i, data in enumerate(requests):
            target = start + i / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() > deadline:
                break
            queue.put_nowait((data, target))
        for _ in tasks:
            queue.put_nowait(None)
    await asyncio.wait(tasks, timeout=max(1.0, deadline - time.perf_counter() + 5))
    for task in tasks:
        task.cancel()
    elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "latencies": latencies, "statuses": statuses, "errors": errors}


def load_process(port: int, count: int, rate: float | None, connections: int,
                 max_seconds: float, senders: int, channels: tuple[str, ...]) -> dict[str, Any]:
    """Entry point of the client process: sign everything, then drive the load."""
    requests = build_requests(port, count, senders=senders, channels=channels)
    return asyncio.run(_load(port, requests, rate, connections, max_seconds))


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Accepted/s and latency percentiles (ms) of one load run."""
    lat = sorted(result["latencies"])
    ok = sum(n for s, n in result["statuses"].items() if 200 <= s < 300)

    def pct(p: float) -> float:
        if not lat:
            return float("nan")
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000, 1)

    return {
        "sent": len(lat), "ok": ok, "statuses": result["statuses"], "errors": result["errors"],
        "seconds": round(result["elapsed"], 2),
        "ok_per_s": round(ok / result["elapsed"], 1) if result["elapsed"] else 0.0,
        "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
        "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else float("nan"),
    }


# -- servers ---------------------------------------------------------------------------------

def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, path: str = "/readyz", seconds: float = 60.0) -> None:
    """Poll until the server answers 200 on `path` (bounded)."""
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not come up")


@contextmanager
def gateway_server(env: dict[str, str], cwd: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`paht serve` as a subprocess; SIGTERM (then kill) on exit."""
    log = open(cwd / f"server-{port}.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port)],
                            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_ready(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@contextmanager
def bare_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The ceiling: an aiohttp app whose POST handler reads the body and returns 200."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.common", "bare", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, "/healthz")
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _run_bare(port: int) -> None:
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", ok)
    app.router.add_get("/healthz", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def rss_kb(pid: int) -> int:
    """Resident set size of a process (kB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- a throw-away PostgreSQL database ----------------------------------------------------------

PG_ADMIN_URL = os.environ.get("PAHT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def throwaway_pg() -> Iterator[str]:
    """Create a migrated database on the test server's instance; drop it afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    from store import migrate

    admin = make_url(PG_ADMIN_URL)
    conninfo = (f"host={admin.host or '127.0.0.1'} port={admin.port or 5432} "
                f"user={admin.username or 'postgres'} dbname={admin.database}")
    name = f"paht_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count_events(database_url: str) -> int:
    """Rows in inbound_event (what the gateway durably holds)."""
    import sqlalchemy as sa

    from store.db import sync_url

    engine = sa.create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM inbound_event")).scalar_one())
    finally:
        engine.dispose()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "bare":
    _run_bare(int(sys.argv[2]))
