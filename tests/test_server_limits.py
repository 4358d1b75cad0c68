"""Slow and many clients (issue 16 §8): the first request's headers must arrive in time, the
number of open connections is capped, and EMFILE accept errors are logged rate-limited."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from aiohttp import web

from gateway.web.server_limits import ACCEPT_ERROR, AcceptErrorFilter, serve


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _start(**limits: float) -> tuple[asyncio.Event, asyncio.Task[object], int]:
    app = web.Application()
    app.router.add_get("/healthz", _ok)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, sock, keepalive_s=5, stop=stop, **limits))
    await asyncio.sleep(0.2)
    return stop, task, port


async def _get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    return data


async def test_unfinished_headers_are_cut_off_and_healthz_answers() -> None:
    stop, task, port = await _start(max_connections=50, header_timeout_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server hung up
    assert b"200 OK" in await _get(port)
    stop.set()
    limits = await task
    assert limits.timed_out == 1  # type: ignore[attr-defined]


async def test_connections_over_the_cap_are_closed() -> None:
    stop, task, port = await _start(max_connections=3, header_timeout_s=5)
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    await asyncio.sleep(0.1)
    assert await asyncio.wait_for(_get(port), 5) == b""  # over the cap: closed at once
    for _, writer in idle:
        writer.close()
    await asyncio.sleep(0.1)
    assert b"200 OK" in await _get(port)
    stop.set()
    await task


def test_accept_errors_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    handler = AcceptErrorFilter(every_s=60)
    with caplog.at_level(logging.ERROR, logger="paht.server"):
        for _ in range(1000):
            handler(loop, {"message": ACCEPT_ERROR, "exception": OSError(24, "EMFILE")})
    loop.close()
    assert len([r for r in caplog.records if r.name == "paht.server"]) == 1
    assert handler.suppressed == 999
