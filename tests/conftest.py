"""Shared fixtures: settings on a fresh database (SQLite and PostgreSQL), the app, a drain.

Store tests take `db_url`, parametrised over both backends. PostgreSQL must be reachable at
PAHT_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/test): .ci/run starts it.
Each test session works in its own database created from that server, so the suite never
touches the data of the `test` database itself.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from gateway.settings import Settings
from store import migrate

PG_ADMIN_URL = os.environ.get("PAHT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TABLES = (
    "classification", "operator_action", "report_history", "outbox", "inbound_event",
    "conversation", "identity", "report", "citizen", "operator", "tracking_counter", "credential",
    "central_report", "central_rating", "central_status_event", "duty_alert", "alert_push",
    "callback_request",
)


def _pg_conninfo(url: str) -> str:
    u = make_url(url)
    return (f"host={u.host or '127.0.0.1'} port={u.port or 5432} user={u.username or 'postgres'} "
            f"dbname={u.database}")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test session, migrated to head."""
    name = f"paht_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(_pg_conninfo(PG_ADMIN_URL), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}. "
                    "Start it (see README) or set PAHT_TEST_PG_URL.")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    yield url
    with psycopg.connect(_pg_conninfo(PG_ADMIN_URL), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate_pg(url: str) -> None:
    with psycopg.connect(_pg_conninfo(url), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file copied for each test (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def _fresh_sqlite(template: Path, directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "paht.db"
    target.write_bytes(template.read_bytes())
    return f"sqlite:///{target}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A clean, migrated database URL: each store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return _fresh_sqlite(sqlite_template, tmp_path / "db")
    url = request.getfixturevalue("pg_url")
    _truncate_pg(url)
    return url


@pytest.fixture
def settings_factory(tmp_path: Path, sqlite_template: Path) -> Callable[..., Settings]:
    """Build Settings on a fresh SQLite database under tmp_path; keyword overrides win."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": _fresh_sqlite(sqlite_template, tmp_path / "db"),
            "var_dir": tmp_path / "var",
            "public_base_url": "http://gateway.test",
            "session_secret": "test-session-secret",
            "run_workers": False,
            "auto_migrate": False,
            "log_json": False,
            "api_tokens": ["test-token"],
            "open311_api_keys": ["test-open311-key"],
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
async def gateway_client(aiohttp_client: Any) -> Callable[[Settings], Any]:
    """Start `create_app(settings)` under aiohttp's test client."""
    from gateway.app import create_app

    async def start(settings: Settings) -> Any:
        return await aiohttp_client(create_app(settings))

    return start


async def drain(app: Any, rounds: int = 50) -> None:
    """Run the worker and the outbox sender until nothing is left to do."""
    from gateway.keys import SERVICES
    from gateway.workers.outbox import OutboxSender
    from gateway.workers.pipeline import Worker

    services = app[SERVICES]
    worker = Worker(services)
    sender = OutboxSender(services)
    for _ in range(rounds):
        handled = await worker.run_once()
        await worker.wait_idle()  # slow lanes (long media and speech) finish too
        sent = await sender.run_once()
        if not handled and not sent:
            return
        await asyncio.sleep(0)


@pytest.fixture
def drain_app() -> Callable[..., Any]:
    """The `drain` helper as a fixture."""
    return drain
