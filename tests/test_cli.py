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
