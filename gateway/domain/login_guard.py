"""Console login throttling: progressive delays per (account, IP) and bounded password hashing.

No account is ever locked (a hard lock let anyone lock out every operator with six guesses).
Instead each (username, client IP) pair gets `free_failures` tries, then every further try
must wait twice as long as the one before, up to `max_delay_s`. The count is taken *before*
the password is checked, in one step without awaiting, so parallel guesses cannot slip past
it. Unknown and existing usernames are throttled alike. Hashing (argon2, 64 MiB each) runs in
threads, at most `max_hashes` at once, with a short bounded queue: a flood of logins is
refused (429) instead of starving the event loop the webhooks share.

State is per process: with several gateway processes an attacker gets that many budgets,
still bounded by the per-IP and global rate limits (gateway/web/ratelimit.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

MAX_KEYS = 50_000


class HashingBusy(Exception):
    """Too many password checks are running or waiting: refuse instead of queueing."""


@dataclass(slots=True)
class _Tries:
    failures: int
    last: float
    not_before: float


class LoginGuard:
    """Per-process login throttle (see the module docstring)."""

    def __init__(self, free_failures: int, max_delay_s: float, max_hashes: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free_failures = max(1, free_failures)
        self.max_delay_s = max(1.0, max_delay_s)
        self.max_hashes = max(1, max_hashes)
        self.max_waiting = self.max_hashes * 4
        self.clock = clock
        self._tries: OrderedDict[tuple[str, str], _Tries] = OrderedDict()
        self._sem: asyncio.Semaphore | None = None
        self._queued = 0

    def delay_after(self, failures: int) -> float:
        """Seconds the next try waits after `failures` failures (0 while some are free)."""
        over = failures - self.free_failures
        if over < 0:
            return 0.0
        return min(self.max_delay_s, float(2 ** min(over, 30)))

    def admit(self, username: str, ip: str) -> bool:
        """Reserve one try for (username, ip); False while its delay runs (nothing checked).

        The try counts as a failure until `succeeded` says otherwise, so concurrent tries see
        each other at once.
        """
        key = (username.casefold(), ip)
        now = self.clock()
        tries = self._tries.get(key)
        if tries is not None and now - tries.last > self.max_delay_s + 60:
            tries = None  # forgotten: the last try is long past
        if tries is None:
            tries = _Tries(0, now, now)
        elif now < tries.not_before:
            return False
        tries.failures += 1
        tries.last = now
        tries.not_before = now + self.delay_after(tries.failures)
        self._tries[key] = tries
        self._tries.move_to_end(key)
        while len(self._tries) > MAX_KEYS:
            self._tries.popitem(last=False)
        return True

    def succeeded(self, username: str, ip: str) -> None:
        """The right password: the pair starts afresh."""
        self._tries.pop((username.casefold(), ip), None)

    def failures(self, username: str, ip: str) -> int:
        """Failures counted for the pair (tests and the audit note)."""
        tries = self._tries.get((username.casefold(), ip))
        return tries.failures if tries else 0

    @contextlib.asynccontextmanager
    async def hashing(self) -> AsyncIterator[None]:
        """A slot to check one password; HashingBusy when the queue is full."""
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_hashes)
        if self._queued >= self.max_hashes + self.max_waiting:
            raise HashingBusy
        self._queued += 1
        try:
            async with self._sem:
                yield
        finally:
            self._queued -= 1
