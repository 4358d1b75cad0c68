"""Webhook ingest bench: durable accepted messages per second and acknowledgement latency.

    .venv/bin/python -m bench.ingest [--count 6000] [--rate 300] [--backends sqlite,postgresql]
                                     [--modes ingest,workers,split] [--json FILE]

For each backend (the embedded SQLite file; a throw-away PostgreSQL database created on the
PAHT_TEST_PG_URL server and dropped afterwards) and each mode (ingest-only,
PAHT_RUN_WORKERS=false; workers on in the webhook process; split: the webhook process ingest-
only and a second `paht serve` on the same database running the workers), it starts `paht
serve` as a subprocess with every channel enabled under bench secrets, then drives signed
requests (Facebook, Zalo, Telegram, Twilio SMS, web chat round-robin, 500 distinct senders)
from a separate client process: once at maximum (closed loop, 32 keep-alive connections) and
once at a fixed rate (open loop, latency counted from each request's scheduled time). A bare
aiohttp handler that only returns 200 runs the same load first: the ceiling of this machine.
After each run the stored rows are counted: every 2xx must be a row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    CHANNELS,
    bare_server,
    count_events,
    free_port,
    gateway_server,
    load_process,
    rss_kb,
    server_env,
    summary,
    throwaway_pg,
)

CONNECTIONS = 32


def drive(pool: ProcessPoolExecutor, port: int, count: int, rate: float | None,
          seconds: float) -> dict[str, Any]:
    """One load run from the client process."""
    future = pool.submit(load_process, port, count, rate, CONNECTIONS if rate is None else 64,
                         seconds, 500, CHANNELS)
    return summary(future.result(timeout=seconds + 120))


def line(label: str, s: dict[str, Any], extra: str = "") -> None:
    """Print one result row."""
    bad = {k: v for k, v in s["statuses"].items() if not 200 <= k < 300}
    other = f"  other {bad}" if bad else ""
    errors = f"  errors {s['errors']}" if s["errors"] else ""
    print(f"{label:<34} {s['ok_per_s']:>8.1f}/s  p50 {s['p50_ms']:>6} ms  p95 {s['p95_ms']:>6} ms"
          f"  p99 {s['p99_ms']:>6} ms  ok {s['ok']}/{s['sent']}{other}{errors}{extra}",
          flush=True)


MODES = {
    "ingest": "ingest-only",
    "workers": "workers on",
    "split": "split (2nd process works)",
}


def run_gateway(pool: ProcessPoolExecutor, backend: str, mode: str, args: argparse.Namespace,
                tmp: Path) -> dict[str, Any]:
    """Max and fixed-rate runs against one server configuration.

    mode "ingest": PAHT_RUN_WORKERS=false; "workers": the webhook process also runs the
    worker, outbox and scheduler; "split": the webhook process is ingest-only and a second
    `paht serve` (no traffic) on the same database runs the workers.
    """
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp / f'bench-{mode}.db'}"
        else:
            url = stack.enter_context(throwaway_pg())
        port = free_port()
        env = server_env(url, tmp / "var", workers=mode == "workers")
        proc = stack.enter_context(gateway_server(env, tmp, port))
        if mode == "split":
            stack.enter_context(gateway_server(server_env(url, tmp / "var", workers=True), tmp,
                                               free_port()))
        drive(pool, port, 200, None, 30)  # warm-up: imports, connection pool, page cache
        before = count_events(url)
        rest = rss_kb(proc.pid)
        out["max"] = drive(pool, port, args.count, None, args.seconds)
        loaded = rss_kb(proc.pid)
        out["rate"] = drive(pool, port, int(args.rate * args.rate_seconds), args.rate,
                            args.rate_seconds + 30)
        stored = count_events(url) - before
        acked = out["max"]["ok"] + out["rate"]["ok"]
        out.update(stored=stored, acked=acked, rss_rest_kb=rest, rss_load_kb=loaded)
    label = MODES[mode]
    line(f"{backend} {label}, max", out["max"], f"  RSS {rest // 1024}→{loaded // 1024} MB")
    line(f"{backend} {label}, {args.rate:g}/s", out["rate"],
         f"  stored {stored} rows for {acked} acks")
    return out


def main() -> int:
    """Run the bench and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=6000, help="requests in the max run")
    parser.add_argument("--seconds", type=float, default=40.0, help="cap of the max run")
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--modes", default="ingest,workers,split",
                        help="comma-separated: ingest, workers, split")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m in MODES]
    results: dict[str, Any] = {}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        port = free_port()
        with bare_server(port):
            drive(pool, port, 200, None, 30)
            # The bare handler is ~10x faster: give it enough requests for a stable figure.
            bare = {"max": drive(pool, port, args.count * 5, None, args.seconds),
                    "rate": drive(pool, port, int(args.rate * args.rate_seconds), args.rate,
                                  args.rate_seconds + 30)}
        results["bare"] = bare
        line("bare aiohttp (ceiling), max", bare["max"])
        line(f"bare aiohttp (ceiling), {args.rate:g}/s", bare["rate"])
        for backend in args.backends.split(","):
            for mode in modes:
                key = f"{backend}-{mode}"
                results[key] = run_gateway(pool, backend, mode, args, tmp)
                share = results[key]["max"]["ok_per_s"] / max(1.0, bare["max"]["ok_per_s"])
                print(f"{'':<34} = {share:.0%} of the bare ceiling", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
