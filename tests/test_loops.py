"""A background loop through an outage: one log line when it starts, one when it ends."""

from __future__ import annotations

import logging

import pytest

from gateway.ops.loops import Backoff


def test_an_outage_is_logged_once_and_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("paht.test_loops")
    errors = Backoff(log, "worker loop", cap=60.0)
    with caplog.at_level(logging.WARNING, logger="paht.test_loops"):
        waits = [errors.failed(OSError("connection refused")) for _ in range(12)]
        errors.ok()
        errors.ok()  # a second good round logs nothing more
    assert waits == sorted(waits) and waits[0] == 1.0 and waits[-1] == 60.0
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["worker loop failing: OSError: connection refused",
                     "worker loop recovered after 12 failed rounds"]
    assert all(r.exc_info is None for r in caplog.records)  # no traceback at WARNING


async def test_run_until_works_while_there_is_work_and_backs_off_on_failure() -> None:
    import asyncio

    from gateway.ops.loops import run_until

    stop, wake = asyncio.Event(), asyncio.Event()
    calls: list[str] = []
    script = [3, 1, OSError("database away"), 0]

    async def once() -> int:
        step = script.pop(0) if script else 0
        calls.append(type(step).__name__ if isinstance(step, Exception) else str(step))
        if isinstance(step, Exception):
            raise step
        if not script:
            stop.set()
        return step

    errors = Backoff(logging.getLogger("paht.test_loops"), "test loop", cap=0.01)
    await run_until(stop, once, wake, 0.01, errors)
    assert calls == ["3", "1", "OSError", "0"]  # straight on while busy; on after the back-off
    assert errors.failures == 0  # the round after the failure went through
