"""Background loops that keep running through an outage without flooding the log.

A loop that fails (the database went away) logs ONE line when the outage starts, then backs off
exponentially (up to a minute) and logs again only when it recovers; the traceback is logged at
DEBUG. Before, a dead PostgreSQL produced a multi-kilobyte traceback every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


class Backoff:
    """Consecutive failures of one loop: how long to wait, and what to log."""

    def __init__(self, log: logging.Logger, what: str, cap: float = 60.0) -> None:
        self.log = log
        self.what = what
        self.cap = cap
        self.failures = 0

    def failed(self, exc: BaseException) -> float:
        """Record a failure; returns the seconds to wait before the next try."""
        self.failures += 1
        if self.failures == 1:
            self.log.warning(f"{self.what} failing: {type(exc).__name__}: {str(exc)[:200]}")
        self.log.debug(f"{self.what} failure", exc_info=exc)
        return min(self.cap, 0.5 * 2 ** min(self.failures, 10))

    def ok(self) -> None:
        """A round went through: log the recovery once."""
        if self.failures:
            self.log.warning(f"{self.what} recovered after {self.failures} failed rounds")
            self.failures = 0


async def run_until(stop: asyncio.Event, once: Callable[[], Awaitable[int]], wake: asyncio.Event,
                    idle_seconds: float, errors: Backoff) -> None:
    """Call `once` until `stop`: again at once while it has work, else after `wake` or
    `idle_seconds`; after a failure, after the back-off."""
    while not stop.is_set():
        wait = idle_seconds
        try:
            done = await once()
            errors.ok()
        except Exception as exc:
            done, wait = 0, errors.failed(exc)
        if done:
            continue
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=wait)
