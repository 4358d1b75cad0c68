"""Pipeline bench: from the ack to a stored, classified report, under load; gateway memory.

    .venv/bin/python -m bench.pipeline [--rates 50,100,200] [--seconds 10] [--backend sqlite]
    .venv/bin/python -m bench.pipeline --worker-only 3000 [--backend postgresql]

Starts `paht serve` with workers on (every channel enabled, providers' APIs unreachable so
replies wait in the outbox as they would during an outage), then for each rate sends that many
signed webhooks per second for `--seconds` from a separate client process, every message from a
new citizen (so each one becomes a report). It waits (bounded) until every event is processed
and prints: processing throughput, ack→report latency percentiles (inbound_event.accepted_at,
committed just before the ack, to processed_at, committed with the report in the same
transaction), how many reports were classified into a sector, and the gateway's RSS at rest
and its peak under load (sampled from /proc every 0.2 s). On the chat channels (web,
Telegram, Facebook, Zalo) a first message opens a draft that the citizen confirms (or the
conversation window submits), so only SMS and voice are classified at once: `--channels sms`
measures ack → classified report; the default mix measures ack → processed.

`--worker-only N` measures one worker process alone: `paht serve --no-workers` stores N
messages (acknowledged, nothing processed), then one `paht worker` process starts and the
bench times it from its first processed event to the last: events per second per worker.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import (
    CHANNELS,
    free_port,
    gateway_server,
    load_process,
    rss_kb,
    server_env,
    summary,
    throwaway_pg,
)
from store.db import sync_url
from store.models import InboundEvent, Report


def _events(url: str) -> list[tuple[Any, ...]]:
    t, r = InboundEvent.__table__, Report.__table__
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return list(conn.execute(
                sa.select(t.c.id, t.c.status, t.c.accepted_at, t.c.processed_at, r.c.sector)
                .select_from(t.outerjoin(r, r.c.id == t.c.report_id))))
    finally:
        engine.dispose()


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p / 100 * len(values)))], 3)


class RssSampler(threading.Thread):
    """Peak RSS of a process, sampled until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss_kb(self.pid))


def one_rate(pool: ProcessPoolExecutor, url: str, port: int, pid: int, rate: float,
             seconds: float, seen: int, channels: tuple[str, ...]) -> tuple[dict[str, Any], int]:
    """Load at `rate` for `seconds`, wait for the pipeline to finish, measure."""
    sampler = RssSampler(pid)
    sampler.start()
    count = int(rate * seconds)
    load = summary(pool.submit(load_process, port, count, rate, 64, seconds + 30, count,
                               channels).result(timeout=seconds + 120))
    started = time.monotonic()
    rows: list[tuple[Any, ...]] = []
    for _ in range(1200):  # at most 4 minutes
        rows = _events(url)[seen:]
        if rows and all(r[1] in ("done", "ignored", "parked") for r in rows):
            break
        time.sleep(0.2)
    drain_s = time.monotonic() - started
    sampler.stop.set()
    sampler.join()
    lat = [(r[3] - r[2]).total_seconds() for r in rows if r[3] is not None and r[2] is not None]
    first = min((r[2] for r in rows), default=None)
    last = max((r[3] for r in rows if r[3] is not None), default=None)
    span = (last - first).total_seconds() if first and last else float("nan")
    out = {
        "rate": rate, "acked": load["ok"], "ack_p99_ms": load["p99_ms"],
        "events": len(rows), "processed_per_s": round(len(lat) / span, 1) if span else 0.0,
        "drain_after_load_s": round(drain_s, 1),
        "ack_to_report_p50_s": _pct(lat, 50), "ack_to_report_p95_s": _pct(lat, 95),
        "ack_to_report_p99_s": _pct(lat, 99),
        "classified": sum(1 for r in rows if r[4]), "parked": sum(r[1] == "parked" for r in rows),
        "rss_peak_mb": round(sampler.peak / 1024, 1),
    }
    return out, seen + len(rows)


def worker_only(backend: str, count: int, channels: tuple[str, ...]) -> None:
    """Store `count` messages with workers off, then time one `paht worker` through them."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool, tempfile.TemporaryDirectory() as tmpdir, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        url = (f"sqlite:///{tmp / 'pipeline.db'}" if backend == "sqlite"
               else stack.enter_context(throwaway_pg()))
        port = free_port()
        with gateway_server(server_env(url, tmp / "var", workers=False), tmp, port):
            load = summary(pool.submit(load_process, port, count, None, 64, 120.0, count,
                                       channels).result(timeout=300))
        env = server_env(url, tmp / "var", workers=True)
        log = (tmp / "worker.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "worker"], cwd=tmp, env=env,
                                stdout=subprocess.DEVNULL, stderr=log)
        try:
            rows: list[tuple[Any, ...]] = []
            for _ in range(3000):  # at most 10 minutes
                rows = _events(url)
                if rows and all(r[1] in ("done", "ignored", "parked") for r in rows):
                    break
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
        done = sorted(r[3] for r in rows if r[3] is not None)
        span = (done[-1] - done[0]).total_seconds() if len(done) > 1 else float("nan")
        print(f"{backend}: {load['ok']} stored, one `paht worker` processed {len(done)} in "
              f"{span:.1f} s = {len(done) / span:.0f} events/s per worker process; classified "
              f"{sum(1 for r in rows if r[4])}, parked {sum(r[1] == 'parked' for r in rows)}",
              flush=True)


def main() -> int:
    """Run the pipeline bench and print one line per rate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="50,100,200")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--channels", default=",".join(CHANNELS),
                        help="sms alone: every message is a submitted, classified report")
    parser.add_argument("--worker-only", type=int, default=0, metavar="N",
                        help="store N messages, then time one `paht worker` through them")
    args = parser.parse_args()
    if args.worker_only:
        worker_only(args.backend, args.worker_only, tuple(args.channels.split(",")))
        return 0
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool, tempfile.TemporaryDirectory() as tmpdir, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        url = (f"sqlite:///{tmp / 'pipeline.db'}" if args.backend == "sqlite"
               else stack.enter_context(throwaway_pg()))
        port = free_port()
        proc = stack.enter_context(gateway_server(server_env(url, tmp / "var", workers=True),
                                                  tmp, port))
        time.sleep(2.0)  # let the classifier and the scheduler settle
        print(f"{args.backend}: gateway RSS at rest {rss_kb(proc.pid) / 1024:.1f} MB", flush=True)
        seen = 0
        for rate in (float(r) for r in args.rates.split(",")):
            result, seen = one_rate(pool, url, port, proc.pid, rate, args.seconds, seen,
                                    tuple(args.channels.split(",")))
            print(f"{rate:>5g}/s × {args.seconds:g} s: {result['acked']} acked (ack p99 "
                  f"{result['ack_p99_ms']} ms), processed {result['processed_per_s']}/s, "
                  f"ack→report p50 {result['ack_to_report_p50_s']} s p95 "
                  f"{result['ack_to_report_p95_s']} s p99 {result['ack_to_report_p99_s']} s, "
                  f"classified {result['classified']}/{result['events']}, parked "
                  f"{result['parked']}, drained {result['drain_after_load_s']} s after the "
                  f"load, RSS peak {result['rss_peak_mb']} MB", flush=True)
        print(f"{args.backend}: gateway RSS after the runs {rss_kb(proc.pid) / 1024:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
