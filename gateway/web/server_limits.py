"""Server limits against slow and many clients, for `paht serve`.

aiohttp closes idle keep-alive connections, but a client that sends its request headers a
byte at a time, or opens a thousand connections and waits, is not bounded by it. Here every
connection must finish its first request's headers within PAHT_HTTP_HEADER_TIMEOUT_SECONDS,
at most PAHT_HTTP_MAX_CONNECTIONS are open (more are closed at once, so /healthz keeps
answering), and "socket.accept() out of system resource" (EMFILE) is logged at most once per
10 s with a count instead of once per try. Put a reverse proxy with its own timeouts in front
and raise `LimitNOFILE` above the connection cap (README).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("paht.server")
ACCEPT_ERROR = "socket.accept() out of system resource"


class ConnectionLimits:
    """Wraps aiohttp's protocol factory: connection cap and first-headers deadline."""

    def __init__(self, factory: Callable[[], Any], max_connections: int,
                 header_timeout_s: float) -> None:
        self.factory = factory
        self.max_connections = max(1, max_connections)
        self.header_timeout_s = header_timeout_s
        self.open = 0
        self.refused = 0
        self.timed_out = 0
        self._classes: dict[type, type] = {}

    def __call__(self) -> Any:
        """A protocol for one new connection (aiohttp's handler, with the limits hooked in)."""
        proto = self.factory()
        base = type(proto)
        cls = self._classes.get(base)
        if cls is None:
            cls = self._classes[base] = _limited_class(base, self)
        proto.__class__ = cls  # RequestHandler has __slots__: no per-instance overrides
        return proto

    def _check(self, proto: Any, transport: asyncio.Transport) -> None:
        # _request_count counts requests whose headers were parsed (aiohttp web_protocol).
        if not transport.is_closing() and getattr(proto, "_request_count", 1) == 0:
            self.timed_out += 1
            transport.abort()


def _limited_class(base: type[Any], limits: ConnectionLimits) -> type:
    """A slot-compatible subclass of aiohttp's RequestHandler that reports to `limits`."""

    def connection_made(self: Any, transport: asyncio.Transport) -> None:
        base.connection_made(self, transport)
        limits.open += 1
        if limits.open > limits.max_connections:
            limits.refused += 1
            transport.abort()
            return
        if limits.header_timeout_s > 0:
            asyncio.get_running_loop().call_later(limits.header_timeout_s, limits._check,
                                                  self, transport)

    def connection_lost(self: Any, exc: BaseException | None) -> None:
        limits.open -= 1
        base.connection_lost(self, exc)

    return type("LimitedRequestHandler", (base,), {
        "__slots__": (), "connection_made": connection_made, "connection_lost": connection_lost,
    })


class AcceptErrorFilter:
    """A loop exception handler that rate-limits the EMFILE accept error."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.last = 0.0
        self.suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Log the accept error at most every `every_s`; pass anything else on."""
        if ACCEPT_ERROR in str(context.get("message", "")):
            now = time.monotonic()
            if now - self.last < self.every_s:
                self.suppressed += 1
                return
            self.last = now
            log.error("accept failed: out of file descriptors (raise LimitNOFILE)",
                      extra={"suppressed": self.suppressed})
            self.suppressed = 0
            return
        loop.default_exception_handler(context)


async def serve(app: web.Application, sock: Any, *, max_connections: int,
                header_timeout_s: float, keepalive_s: float,
                stop: asyncio.Event | None = None) -> ConnectionLimits:
    """Run `app` on `sock` with the limits until `stop` is set (or forever)."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(AcceptErrorFilter())
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=keepalive_s,
                           shutdown_timeout=10)
    await runner.setup()
    assert runner.server is not None
    limits = ConnectionLimits(runner.server, max_connections, header_timeout_s)
    server = await loop.create_server(limits, sock=sock, backlog=128)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        server.close()
        await runner.cleanup()
    return limits
