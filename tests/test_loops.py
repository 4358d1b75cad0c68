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
