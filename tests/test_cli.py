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


# --- clean failures: one line on stderr, exit 2 (configuration) or 1 (runtime) ----------------

DB_COMMANDS: list[tuple[str, ...]] = [
    ("serve",), ("worker",), ("db", "upgrade"), ("operator", "add", "lan", "--password-stdin"),
    ("keywords", "suggest"),
]
URL_ANNOUNCED = "mở http"


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int,
                         *needles: str, lines: int = 1) -> list[str]:
    """Exit `code`, exactly `lines` stderr lines naming every needle, no traceback, no URL."""
    err = result.stderr.splitlines()
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(err) == lines, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert URL_ANNOUNCED not in result.stdout
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    return err


def test_malformed_database_url_is_a_configuration_error(tmp_path: Path) -> None:
    for command in DB_COMMANDS:
        result = paht(*command, stdin="a-long-enough-password\n", cwd=tmp_path,
                      env={"PAHT_DATABASE_URL": "nonsense://x"})
        (line,) = assert_clean_failure(result, 2, "PAHT_DATABASE_URL", "'nonsense'",
                                       "sqlite", "postgresql")
        assert line.startswith(f"paht {command[0]}")
    # An unparsable URL is not echoed: a half-typed one may hold the password.
    result = paht("db", "upgrade", cwd=tmp_path,
                  env={"PAHT_DATABASE_URL": "postgresql//paht:hunter22@db/paht"})
    assert_clean_failure(result, 2, "PAHT_DATABASE_URL", "not a database URL")
    assert "hunter22" not in result.stderr


def test_unreachable_postgresql_refuses_to_start(tmp_path: Path) -> None:
    env = {"PAHT_DATABASE_URL": "postgresql://paht:s3cret-pw@127.0.0.1:1/paht"}
    for command in DB_COMMANDS:
        result = paht(*command, stdin="a-long-enough-password\n", cwd=tmp_path, env=env)
        assert_clean_failure(result, 1, "database unavailable", "127.0.0.1:1",
                             "Connection refused")
        assert "s3cret-pw" not in result.stderr + result.stdout
        assert "worker running" not in result.stdout


def test_sqlite_in_a_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    env = {"PAHT_DATABASE_URL": f"sqlite:///{blocker}/sub/paht.db"}
    for command in (("serve",), ("db", "upgrade")):
        result = paht(*command, cwd=tmp_path, env=env)
        assert_clean_failure(result, 1, "database unavailable", str(blocker / "sub"),
                             "cannot create directory")


def test_missing_config_directory(tmp_path: Path) -> None:
    result = paht("classify", stdin="mất điện\n", cwd=tmp_path,
                  env={"PAHT_CONFIG_DIR": "/nonexistent"})
    assert_clean_failure(result, 2, "PAHT_CONFIG_DIR=/nonexistent", "not a directory",
                         "sectors.toml", "messages.vi.toml")
    half = tmp_path / "province"
    half.mkdir()
    (half / "sectors.toml").write_text("")
    result = paht("serve", cwd=tmp_path, env={"PAHT_CONFIG_DIR": str(half),
                                             "PAHT_DATABASE_URL": f"sqlite:///{tmp_path}/p.db"})
    (line,) = assert_clean_failure(result, 2, "PAHT_CONFIG_DIR", "messages.vi.toml")
    assert "sectors.toml" not in line


def test_invalid_settings_name_the_variable_and_the_allowed_values(tmp_path: Path) -> None:
    env = {"PAHT_REVIEW_POLICY": "maybe", "PAHT_PORT": "abc", "PAHT_VOICE_MODE": "x"}
    for command in (("serve",), ("classify",), ("models", "download", "vi")):
        result = paht(*command, cwd=tmp_path, env=env)
        lines = assert_clean_failure(result, 2, lines=3)
        by_name = {name: next(line for line in lines if name in line) for name in env}
        assert "'low_confidence', 'all' or 'none'" in by_name["PAHT_REVIEW_POLICY"]
        assert "'maybe'" in by_name["PAHT_REVIEW_POLICY"]
        assert "integer" in by_name["PAHT_PORT"]
        assert "'record' or 'stream'" in by_name["PAHT_VOICE_MODE"]


def test_serve_on_a_busy_port_fails_before_announcing_the_url(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"PAHT_DATABASE_URL": f"sqlite:///{tmp_path / 'paht.db'}",
               "PAHT_VAR_DIR": str(tmp_path / "var")}
        result = paht("serve", "--port", str(port), cwd=tmp_path, env=env)
        assert_clean_failure(result, 1, f"127.0.0.1:{port}", "already in use", "--port")
        assert result.stdout == ""
        result = paht("serve", cwd=tmp_path, env={**env, "PAHT_PORT": str(port)})
        assert_clean_failure(result, 1, f"127.0.0.1:{port}", "already in use", "PAHT_PORT")


def test_traceback_only_on_request(tmp_path: Path) -> None:
    env = {"PAHT_DATABASE_URL": "postgresql://paht@127.0.0.1:1/paht", "PAHT_TRACEBACK": "1"}
    result = paht("db", "upgrade", cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "DatabaseUnavailable" in result.stderr


def test_serve_on_a_fresh_directory_creates_the_sqlite_database(tmp_path: Path) -> None:
    """The README quick start: `paht serve` with no settings makes var/paht.db."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAHT_")}
    env.update(PAHT_PORT=str(port), PAHT_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        status = None
        for _ in range(300):
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz",
                                                timeout=1).status
                break
            except OSError:
                time.sleep(0.1)
        assert status == 200
        assert (tmp_path / "var" / "paht.db").is_file()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/" in out


async def test_check_database_answers_or_names_the_reason(tmp_path: Path) -> None:
    from store.db import DatabaseUnavailable, DatabaseUrlError, check_database
    from tests.conftest import PG_ADMIN_URL

    await check_database(PG_ADMIN_URL)
    await check_database(f"sqlite:///{tmp_path / 'new' / 'paht.db'}")
    assert (tmp_path / "new" / "paht.db").exists()
    with pytest.raises(DatabaseUnavailable) as info:
        await check_database("postgresql://paht:s3cret-pw@127.0.0.1:1/paht", seconds=2)
    assert "s3cret-pw" not in info.value.reason and "\n" not in info.value.reason
    assert "***" in info.value.reason
    with pytest.raises(DatabaseUrlError):
        await check_database("nonsense://x")
