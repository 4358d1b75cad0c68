"""The worker: claims persisted events and runs the pipeline stages (DESIGN §2.2).

Stages: fetch media and transcribe audio (gateway/workers/media.py, outside any transaction)
→ resolve the citizen → dialog (join the conversation, classify once, lifecycle) → queue the
replies (outbox). A claimed batch is worked in ONE transaction that also marks its events
done, so a crash leaves every event of the batch claimable again and nothing half-done. If the
batch fails, each of its events is retried alone in its own transaction, so one bad event
costs only itself (it is retried with back-off and parked after `worker_max_attempts`).
On SQLite the batch commits early whenever a webhook is waiting for the single writer.

Leases: while a batch works (media downloads can be slow) its lease is extended every third
of the lease; events are finished or failed only where `claimed_by = me AND status =
'processing'`, so an event another worker re-claimed and finished is never reset. A failure
on an event that is no longer ours (typically the other worker's commit won the outbox
dedup key) means it is already done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import InboundMessage
from channels.codec import message_from_dict
from gateway.domain.dialog import Dialog
from gateway.ops.loops import Backoff, run_until
from gateway.ops.privacy import mask_urn
from gateway.services import Services
from gateway.workers.media import Prepared, prepare
from gateway.workers.outbox import release_held
from store.models import EVENT_DONE, EVENT_IGNORED, InboundEvent, utcnow
from store.repos import citizens as citizens_repo
from store.repos import events as events_repo
from store.write_gate import maybe

log = logging.getLogger("paht.pipeline")


@dataclass
class _Done:
    """What processing one event decided, applied when its transaction commits."""

    event: InboundEvent
    msg: InboundMessage
    status: str
    report_id: int | None


async def handle_event(
    services: Services, dialog: Dialog, session: AsyncSession, event: InboundEvent,
    prepared: Prepared, known: citizens_repo.Known | None = None,
) -> _Done:
    """Run one prepared event through citizen → dialog → replies inside `session`."""
    msg = prepared.msg
    if services.channels.traits(msg.channel).spoken:
        msg = replace(msg, text="")  # what a caller said is a transcript, not typed text
    citizen = await citizens_repo.resolve_citizen(
        session, msg.sender, msg.channel, display_name=msg.sender_name,
        phone=msg.contact_phone or _phone_of(msg.sender), seen_at=msg.received_at, known=known,
    )
    if services.channels.traits(msg.channel).reply_window is not None:
        # Only replies on channels with a reply window are ever held.
        await release_held(services, session, msg.sender)
    outcome = await dialog.handle(
        session, msg, citizen, extra_attachments=prepared.media, transcript=prepared.transcript,
        transcript_confidence=prepared.confidence, flags=prepared.flags, known=known,
    )
    report = outcome.report
    for n, reply in enumerate(outcome.replies):
        await services.lifecycle.notifier.queue(
            session, channel=msg.channel, recipient=msg.sender, text=reply.text,
            buttons=reply.buttons, report_id=report.id if report else None,
            dedup_key=f"reply:{event.id}:{n}", inbound_at=msg.received_at,
            # The replies commit with the event's "done" in one transaction, so they are
            # never queued twice; the unique dedup key still guards it.
            check_duplicate=False,
        )
    status = EVENT_IGNORED if outcome.ignored and report is None else EVENT_DONE
    return _Done(event, msg, status, report.id if report else None)


def _phone_of(urn: str) -> str | None:
    return urn[4:] if urn.startswith("tel:") else None


class Worker:
    """Claims due events in batches and processes them."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self.dialog = Dialog(services)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xFFFF:x}"
        self.lease = timedelta(seconds=services.settings.worker_lease_seconds)
        self.batch_size = max(1, services.settings.worker_batch_size)
        # Media downloads and transcriptions of all batches share this bound.
        self._prep = asyncio.Semaphore(max(1, services.settings.worker_concurrency))
        self._slow: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set."""
        await run_until(stop, self.run_once, self.s.worker_wake,
                        self.s.settings.worker_poll_seconds, Backoff(log, "worker loop"))
        # Stopping: give slow lanes a moment; what is cut short keeps its claim until the
        # lease ends, and another worker (or the next start) redoes it from the start.
        if self._slow:
            _, unfinished = await asyncio.wait(list(self._slow), timeout=5.0)
            for lane in unfinished:
                lane.cancel()

    async def run_once(self) -> int:
        """Claim one batch and process it; returns how many events were handled."""
        async with maybe(self.s.write_gate, urgent=False), self.s.sessions() as session:
            events = await events_repo.claim_events(session, self.name, self.batch_size, self.lease)
        if not events:
            return 0
        tasks = {e.id or 0: asyncio.create_task(self._prepare_one(e)) for e in events}
        media = [tasks[e.id or 0] for e in events if self._needs_preparing(e)]
        wait = self.s.settings.worker_prepare_wait_seconds
        if media and wait > 0:
            await asyncio.wait(media, timeout=wait)
        # A slow download or transcription (a 15-minute voice note) must not hold the batch:
        # its sender's events go on in a slow lane, in order, and the worker claims more.
        slow_senders = {e.sender for e in events
                        if self._needs_preparing(e) and not tasks[e.id or 0].done()}
        fast = [e for e in events if e.sender not in slow_senders]
        slow = [e for e in events if e.sender in slow_senders]
        for sender in dict.fromkeys(e.sender for e in slow):
            # One lane per citizen: a long voice note delays only its own sender's messages,
            # not the other slow ones claimed with it.
            mine = [e for e in slow if e.sender == sender]
            lane = asyncio.create_task(self._leased(mine, tasks), name="slow-lane")
            self._slow.add(lane)
            lane.add_done_callback(self._slow.discard)
        if fast:
            await self._leased(fast, tasks)
        return len(events)

    async def wait_idle(self) -> None:
        """Wait for the slow lanes still working (tests, shutdown)."""
        while self._slow:
            await asyncio.gather(*list(self._slow), return_exceptions=True)

    async def _leased(self, events: list[InboundEvent],
                      tasks: dict[int, asyncio.Task[Prepared]]) -> None:
        """Process `events` once their preparation is done, keeping their lease alive."""
        keeper = asyncio.create_task(self._keep_lease([e.id or 0 for e in events]),
                                     name="lease-keeper")
        try:
            results = await asyncio.gather(*(tasks[e.id or 0] for e in events),
                                           return_exceptions=True)
            prepared = {e.id or 0: r for e, r in zip(events, results, strict=True)}
            await self._process(events, prepared)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_lease(self, ids: list[int]) -> None:
        """Extend the batch's lease every third of it until cancelled (best effort)."""
        every = max(0.05, self.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(every)
            try:
                async with maybe(self.s.write_gate, urgent=False), self.s.sessions() as session:
                    await events_repo.extend_lease(session, ids, self.name, self.lease)
            except Exception:
                log.warning("could not extend the lease", exc_info=True)

    def _needs_preparing(self, event: InboundEvent) -> bool:
        """Media to download or speech to transcribe before the event can be processed."""
        return bool(event.message.get("attachments")) or self.s.channels.traits(
            event.channel).spoken

    async def _prepare_one(self, event: InboundEvent) -> Prepared:
        """Media and speech of one event, outside any transaction (bounded across batches)."""
        msg = message_from_dict(event.message)
        if not msg.attachments and not self.s.channels.traits(msg.channel).spoken:
            return Prepared(msg)
        async with self._prep:
            return await prepare(self.s, msg)

    async def _process(self, events: list[InboundEvent],
                       prepared: dict[int, Prepared | BaseException]) -> None:
        """Work the batch in as few transactions as the write gate allows; fall back per event."""
        pending = list(events)
        while pending:
            started = time.perf_counter()
            try:
                done = await self._transaction(pending, prepared)
            except Exception as exc:
                chunk, pending = pending, []
                if len(chunk) == 1:
                    await self._failed(chunk[0], exc)
                    continue
                # Something in the batch failed: run each event of this chunk alone, so the
                # failure is charged to the event that caused it.
                for event in chunk:
                    await self._alone(event, prepared)
                continue
            pending = pending[len(done):]
            await self._finished(done, started)

    async def _transaction(self, events: list[InboundEvent],
                           prepared: dict[int, Prepared | BaseException]) -> list[_Done]:
        """Process events in order in one transaction until the batch ends or a webhook waits."""
        gate = self.s.write_gate
        done: list[_Done] = []
        async with maybe(gate, urgent=False), self.s.sessions() as session:
            # What an event creates is found by the next one through `known`, and ids are
            # flushed where they are needed: no flush of the whole batch before every query.
            session.sync_session.autoflush = False
            known = citizens_repo.Known()
            await known.load(session, [e.sender for e in events], lock=True)
            for event in events:
                item = prepared[event.id or 0]
                if isinstance(item, BaseException):
                    if not done:
                        raise item
                    break  # commit what is done; the failing one is retried alone next
                done.append(await handle_event(self.s, self.dialog, session, event, item, known))
                if gate is not None and gate.urgent_waiting:
                    break  # SQLite: let the waiting webhook commit go first
            await events_repo.finish_events(session, [(d.event.id or 0, d.status, d.report_id)
                                               for d in done], worker=self.name)
            await session.commit()
        return done

    async def _alone(self, event: InboundEvent,
                     prepared: dict[int, Prepared | BaseException]) -> None:
        started = time.perf_counter()
        try:
            done = await self._transaction([event], prepared)
        except Exception as exc:
            await self._failed(event, exc)
            return
        await self._finished(done, started)

    async def _failed(self, event: InboundEvent, exc: BaseException) -> None:
        """Record an event's failure: retried with back-off, parked after too many attempts."""
        self.s.metrics.inc("paht_events_failed_total", channel=event.channel)
        async with maybe(self.s.write_gate, urgent=False), self.s.sessions() as session:
            status = await events_repo.fail_event(
                session, event.id or 0, f"{type(exc).__name__}: {exc}",
                event.attempts, self.s.settings.worker_max_attempts, worker=self.name,
            )
        if status == "not_mine":
            log.info("event finished by another worker; nothing to retry",
                     extra={"event_id": event.id})
            return
        log.error(
            "pipeline failed",
            extra={"event_id": event.id, "sender": mask_urn(event.sender),
                   "status": status, "why": f"{type(exc).__name__}: {str(exc)[:300]}"},
        )

    async def _finished(self, done: list[_Done], started: float) -> None:
        """After commit: metrics, the outbox wake-up and button answers."""
        elapsed = time.perf_counter() - started
        now = utcnow()
        for item in done:
            lag = (now - item.event.accepted_at).total_seconds()
            self.s.metrics.observe("paht_pipeline_seconds", max(lag, 0.0),
                                   channel=item.event.channel)
            if item.msg.meta.callback_id:  # stop the pressed button's spinner (best effort)
                await self.s.channels.answer_button(item.msg.channel, item.msg.meta.callback_id)
        if done:
            self.s.metrics.observe("paht_stage_seconds", elapsed / len(done), stage="process")

    async def _one(self, event: InboundEvent) -> None:
        """Process a single claimed event (tests and tools)."""
        prepared: dict[int, Prepared | BaseException] = {}
        try:
            prepared[event.id or 0] = await self._prepare_one(event)
        except Exception as exc:
            prepared[event.id or 0] = exc
        await self._alone(event, prepared)
