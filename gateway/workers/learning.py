"""The second opinion keeps learning: every `PAHT_RELEARN_HOURS` each worker process retrains
it on the shipped examples and the newest operator judgements (nlp/second_opinion.py).

Each process learns for itself (the model lives in its memory), so this is a plain loop of the
process's background tasks, not a scheduler job that only the leader runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.domain.keywords import recent_judgements
from gateway.services import Services

log = logging.getLogger("paht.learning")


async def relearn_once(services: Services) -> int:
    """Retrain the classifier's second opinion now; the number of judgements it learnt."""
    if services.classifier is None:
        return 0
    judged = await recent_judgements(services.settings, services.sessions)
    await asyncio.to_thread(services.classifier.learn_examples, judged)
    log.info(f"second opinion relearnt with {len(judged)} operator judgements")
    return len(judged)


async def relearn_loop(services: Services, stop: asyncio.Event) -> None:
    """Call :func:`relearn_once` every `PAHT_RELEARN_HOURS` until `stop` (0: never)."""
    hours = services.settings.relearn_hours
    if hours <= 0:
        return
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=hours * 3600)
        if stop.is_set():
            return
        try:
            await relearn_once(services)
        except Exception as exc:  # the model keeps what it had; try again next round
            log.warning(f"relearning failed: {type(exc).__name__}: {str(exc)[:200]}")
