"""Engine and session factory for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel.ext.asyncio.session import AsyncSession

_DRIVERS = {  # backend -> (asyncio driver, blocking driver)
    "sqlite": ("sqlite+aiosqlite", "sqlite"),
    "postgresql": ("postgresql+psycopg", "postgresql+psycopg"),  # psycopg 3 does both
}


def _with_driver(url: str, blocking: bool) -> str:
    u = make_url(url)
    drivers = _DRIVERS.get(u.get_backend_name())
    if drivers is not None:
        u = u.set(drivername=drivers[1 if blocking else 0])
    return u.render_as_string(hide_password=False)


def async_url(url: str) -> str:
    """The URL with an asyncio driver (aiosqlite, psycopg 3)."""
    return _with_driver(url, blocking=False)


def sync_url(url: str) -> str:
    """The URL with a blocking driver, for Alembic and CLI tools."""
    return _with_driver(url, blocking=True)


def is_sqlite(url: str) -> bool:
    """True for the embedded SQLite store."""
    return make_url(url).get_backend_name() == "sqlite"


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of a SQLite file (var/ on a fresh clone)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers (console, API) run beside the single writer; synchronous=FULL keeps an
    # acknowledged message on disk through a power cut, busy_timeout queues writers instead
    # of failing them.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An async engine for `url` with the pragmas and pool settings we rely on."""
    ensure_sqlite_dir(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if not is_sqlite(url):
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    else:
        kwargs.update(connect_args={"timeout": 10})
    engine = create_async_engine(async_url(url), **kwargs)
    if is_sqlite(url):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep objects usable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> bool:
    """True when the database answers."""
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return True
    except Exception:
        return False


# --- start-up check -------------------------------------------------------------------------


class DatabaseUrlError(ValueError):
    """The database URL cannot be parsed or names a backend we do not support."""


class DatabaseUnavailable(Exception):
    """The database did not answer at start-up; `reason` is one line without the password."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_url(url: str) -> URL:
    """The parsed URL of a supported backend (SQLite, PostgreSQL), else DatabaseUrlError."""
    try:
        u = make_url(url)
    except (ArgumentError, ValueError) as exc:
        # The text is not repeated: a half-typed URL may well contain a password.
        raise DatabaseUrlError(
            "not a database URL (expected sqlite:///path/paht.db or "
            "postgresql://user:password@host:5432/db)"
        ) from exc
    backend = u.get_backend_name()
    if backend not in _DRIVERS:
        raise DatabaseUrlError(
            f"unsupported database {backend!r} in {masked_url(url)} "
            f"(use one of: {', '.join(_DRIVERS)})"
        )
    return u


def masked_url(url: str) -> str:
    """`url` with its password replaced by ***, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparsable URL>"


def _one_line(exc: BaseException, password: str | None) -> str:
    cause = getattr(exc, "orig", None) or exc  # the DBAPI error under SQLAlchemy's wrapper
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[0] if lines else type(cause).__name__
    if password and len(password) >= 3:  # shorter ones would mangle the text, not protect it
        text = text.replace(password, "***")
    return text


async def check_database(url: str, *, seconds: float = 5.0) -> None:
    """Connect and run SELECT 1 within `seconds`; DatabaseUnavailable (or DatabaseUrlError)."""
    u = parse_url(url)
    where = masked_url(url)
    if is_sqlite(url):
        try:
            ensure_sqlite_dir(url)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"{where}: cannot create directory {exc.filename}: {exc.strerror or exc}"
            ) from exc
        connect_args: dict[str, Any] = {"timeout": seconds}
    else:
        connect_args = {"connect_timeout": max(1, math.ceil(seconds))}
    engine = create_async_engine(async_url(url), poolclass=NullPool, connect_args=connect_args)
    try:
        async with asyncio.timeout(seconds + 1):
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
    except TimeoutError as exc:
        raise DatabaseUnavailable(f"{where}: no answer within {seconds:g} s") from exc
    except Exception as exc:  # any driver error means "not usable"; the reason says which
        raise DatabaseUnavailable(f"{where}: {_one_line(exc, u.password)}") from exc
    finally:
        await engine.dispose()


def dialect_name(session: AsyncSession) -> str:
    """'sqlite' or 'postgresql'."""
    return session.bind.dialect.name if session.bind else "sqlite"


def insert_for(session: AsyncSession, table: Any) -> Any:
    """The dialect's INSERT (with ON CONFLICT) for `table`."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert)(table)
