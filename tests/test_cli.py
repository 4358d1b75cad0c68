"""The `paht` command line, run as a real subprocess (python -m gateway)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.speech_support import espeak_wav, whisper_model_dir


def paht(*args: str, stdin: str = "", cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], input=stdin, capture_output=True, text=True,
        cwd=cwd, env={**os.environ, **(env or {})}, timeout=240, check=False,
    )


def test_classify_lines_and_jsonl() -> None:
    lines = "duong Le Loi ngap sau qua, xe chet may\nđèn đg ko sáng mấy hôm nay r\n\nxin chào\n"
    result = paht("classify", stdin=lines)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["sector"] for r in rows] == ["ha_tang_do_thi", "ha_tang_do_thi", "khac"]
    for row in rows:
        assert {"sector", "score", "needs_review", "runner_up", "matches", "urgent",
                "address"} <= set(row)
        assert 0.0 <= row["score"] <= 1.0
    assert rows[0]["urgent"] is True  # "ngập sâu"
    assert "Le Loi" in (rows[0]["address"] or "")

    jsonl = json.dumps({"id": "a1", "text": "Mất nước 2 ngày nay"}, ensure_ascii=False) + "\n"
    result = paht("classify", "--jsonl", stdin=jsonl)
    row = json.loads(result.stdout)
    assert row["id"] == "a1" and row["sector"] == "cap_nuoc"
    bad = paht("classify", "--jsonl", stdin="{not json\n")
    assert bad.returncode == 2 and "bad JSON" in bad.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    db = tmp_path / "x" / "paht.db"
    result = paht("db", "upgrade", env={"PAHT_DATABASE_URL": f"sqlite:///{db}"})
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"report", "inbound_event", "outbox", "central_report"} <= tables


def test_operator_add_reads_the_password_from_stdin(tmp_path: Path) -> None:
    env = {"PAHT_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}
    short = paht("operator", "add", "lan", "--password-stdin", stdin="short\n", env=env)
    assert short.returncode == 2
    ok = paht("operator", "add", "lan", "--role", "supervisor", "--password-stdin",
              stdin="a-long-enough-password\n", env=env)
    assert ok.returncode == 0, ok.stderr
    with sqlite3.connect(tmp_path / "p.db") as conn:
        role, hashed = conn.execute("SELECT role, password_hash FROM operator").fetchone()
    assert role == "supervisor" and hashed.startswith("$argon2")


@pytest.mark.speech
def test_transcribe_with_whisper_prints_vietnamese(tmp_path: Path) -> None:
    model = whisper_model_dir(tmp_path / "models")
    wav = espeak_wav("Xin chào. Một.", tmp_path / "vi.wav")
    result = paht("transcribe", "--engine", "whisper", "--model", str(model), str(wav))
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout.splitlines()[0])
    assert "xin chào" in row["text"].lower()
    assert row["duration_s"] > 0 and row["rtf"] > 0


def test_help_lists_every_command() -> None:
    out = paht("--help").stdout
    for command in ("serve", "classify", "transcribe", "models", "db", "operator", "keywords",
                    "telegram"):
        assert command in out


def test_serve_without_workers_and_a_separate_worker(tmp_path: Path) -> None:
    import socket
    import time
    import urllib.request

    from channels.web import session_token

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PAHT_DATABASE_URL": f"sqlite:///{tmp_path / 'paht.db'}",
           "PAHT_VAR_DIR": str(tmp_path / "var"), "PAHT_SESSION_SECRET": "split-secret",
           "PAHT_LOG_LEVEL": "WARNING"}
    web = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--no-workers",
                            "--port", str(port)], cwd=tmp_path, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        sid = "split_session_00001"
        body = json.dumps({"sid": sid, "token": session_token("split-secret", sid), "id": "1",
                           "text": "Mất điện cả khu phố"}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/web", data=body)
        assert urllib.request.urlopen(req, timeout=5).status == 200
        time.sleep(1.0)
        with sqlite3.connect(tmp_path / "paht.db") as conn:
            assert conn.execute("SELECT status FROM inbound_event").fetchone() == ("pending",)
        worker = subprocess.Popen([sys.executable, "-m", "gateway", "worker"], cwd=tmp_path,
                                  env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        status = None
        for _ in range(300):
            with sqlite3.connect(tmp_path / "paht.db") as conn:
                status = conn.execute("SELECT status FROM inbound_event").fetchone()[0]
            if status == "done":
                break
            time.sleep(0.1)
        assert status == "done"
    finally:
        for proc in (web, worker):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=20)
