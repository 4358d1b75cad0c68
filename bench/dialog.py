"""Dialog benchmark: intent accuracy, abuse false positives, emergencies, time to first reply.

    python -m bench.dialog [--latency N]

1. Intent accuracy per intent and per register (formal, SMS without diacritics, teencode,
   central dialect, English) on `tests/data/utterances.jsonl` (the phrase lists were tuned on
   it) and on `tests/data/utterances_heldout.jsonl` (written before tuning, never tuned on).
2. Abuse false positives: on the project's own labelled report texts (tests/data/*_v2.jsonl,
   labelled_reports.jsonl, every text an ordinary report) and on the real reports of
   `../shared/data/real_reports_dev.jsonl` (read here, never copied into the repository; only
   their ids are printed). The old rule (abuse words compared after folding diacritics) is
   measured too, for comparison. Emergencies detected in the same ordinary texts are printed
   as false alarms.
3. Time from message to first reply: the real app (SQLite in a temporary directory, its own
   worker) takes web chat messages over HTTP; the clock runs from the POST to the moment the
   reply can be polled from `/chat/messages`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXAMPLES = ROOT / "config" / "examples"
REAL = ROOT.parent / "shared" / "data" / "real_reports_dev.jsonl"
MERGE = {"deny": "correction", "ack": "thanks"}  # the intent names
OLD_ABUSE = ["đm", "dm", "đmm", "dmm", "vcl", "vl", "đéo", "deo", "địt", "dit me", "đồ chó",
             "do cho", "ngu như", "ngu nhu", "cút", "đĩ", "clgt", "cc"]


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def intent_accuracy(intents: Any, path: Path) -> None:
    """Print accuracy per intent and per register, and the errors."""
    rows = _rows(path)
    by_intent: dict[str, list[bool]] = defaultdict(list)
    by_register: dict[str, list[bool]] = defaultdict(list)
    errors = []
    for row in rows:
        got = intents.detect(row["text"], row.get("state", "idle"))
        name = MERGE.get(got.name, got.name)
        ok = name == row["intent"]
        by_intent[row["intent"]].append(ok)
        by_register[row["register"]].append(ok)
        if not ok:
            errors.append((row["intent"], name, row["register"], row["text"]))
    total = sum(sum(v) for v in by_intent.values())
    print(f"\n{path.name}: {total}/{len(rows)} = {total / len(rows):.3f}")
    print("  per intent:   " + "  ".join(
        f"{k} {sum(v)}/{len(v)}" for k, v in sorted(by_intent.items())))
    print("  per register: " + "  ".join(
        f"{k} {sum(v)}/{len(v)}" for k, v in sorted(by_register.items())))
    for want, got, register, text in errors:
        print(f"  error: want {want}, got {got} [{register}] {text}")


def _old_abusive(text: str) -> bool:
    from gateway.domain.texts import fold
    folded = fold(text)
    words = set(folded.split())
    bad = {fold(w) for w in OLD_ABUSE}
    return any((" " in b and b in folded) or b in words for b in bad)


def ordinary_texts(intents: Any) -> None:
    """Abuse and emergency false alarms on texts that are ordinary reports."""
    own = [r["text"] for path in (EXAMPLES / "tune_v2.jsonl", DATA / "heldout_v2.jsonl",
                                  EXAMPLES / "labelled_reports.jsonl")
           if path.exists() for r in _rows(path)]
    own += [r["text"] for r in _rows(DATA / "utterances.jsonl") if r["intent"] == "report"]
    own += [r["text"] for r in _rows(DATA / "utterances_heldout.jsonl")
            if r["intent"] == "report"]
    sets: list[tuple[str, list[tuple[str, str]]]] = [
        ("own report texts", [(f"own-{i}", t) for i, t in enumerate(dict.fromkeys(own))])]
    if REAL.exists():
        sets.append(("real dev set", [(r["id"], r["text"]) for r in _rows(REAL)]))
    else:
        print(f"\n(no {REAL}: real set skipped)")
    for label, items in sets:
        flagged = [(i, intents.detect(t)) for i, t in items]
        abusive = [(i, d.words) for i, d in flagged if d.abusive]
        old = sum(_old_abusive(t) for _, t in items)
        alarms = [(i, d.hazard.name if d.hazard else "") for i, d in flagged
                  if d.name == "emergency"]
        n = len(items)
        print(f"\n{label} ({n} texts): abuse false positives {len(abusive)}/{n} "
              f"= {len(abusive) / n:.3f} (old folded rule: {old}/{n})")
        for i, words in abusive:
            print(f"  abuse FP {i}: {', '.join(words)}")
        print(f"  emergency alarms (texts about ordinary problems): {len(alarms)}/{n}")
        for i, hazard in alarms:
            print(f"  alarm {i}: {hazard}")
        names = Counter(d.name for _, d in flagged)
        print("  intents seen: " + ", ".join(f"{k} {v}" for k, v in names.most_common()))


async def first_reply_latency(count: int) -> None:
    """Message → first reply through the real app and its worker (web chat)."""
    from aiohttp.test_utils import TestClient, TestServer

    from channels.web import session_token
    from gateway.app import create_app
    from gateway.settings import Settings
    from store import migrate

    samples = [r["text"] for r in _rows(DATA / "utterances_heldout.jsonl")]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/paht.db"
        migrate.upgrade(url)
        settings = Settings(_env_file=None, database_url=url, var_dir=Path(tmp) / "var",  # type: ignore[call-arg]
                            session_secret="bench-secret", run_workers=True,
                            auto_migrate=False, log_level="WARNING", worker_poll_seconds=0.5,
                            rate_limit_ip_allowlist="127.0.0.1")  # one client, many chats
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        times: list[float] = []
        try:
            for n in range(count):
                sid = f"bench_dialog_{n:05d}"
                auth = {"sid": sid, "token": session_token("bench-secret", sid)}
                text = samples[n % len(samples)]
                started = time.perf_counter()
                resp = await client.post("/webhooks/web", data=json.dumps(
                    {**auth, "id": f"b{n}", "text": text}))
                assert resp.status == 200
                while True:
                    got = await client.get("/chat/messages", params={**auth, "after": "0"})
                    if (await got.json())["messages"]:
                        break
                    if time.perf_counter() - started > 30:
                        raise RuntimeError("no reply within 30 s")
                    await asyncio.sleep(0.005)
                times.append(time.perf_counter() - started)
        finally:
            await client.close()
    times.sort()
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    print(f"\nmessage → first reply, web chat, {count} messages one at a time: "
          f"p50 {statistics.median(times) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
          f"max {times[-1] * 1000:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=int, default=40, help="messages for the latency run")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from gateway.domain.intents import Intents

    intents = Intents.load()
    for name in ("utterances.jsonl", "utterances_heldout.jsonl"):
        intent_accuracy(intents, DATA / name)
    ordinary_texts(intents)
    if args.latency > 0:
        asyncio.run(first_reply_latency(args.latency))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
