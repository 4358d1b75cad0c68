"""Operator accounts: argon2 password hashes, creation from the CLI, login with lock-out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.settings import Settings
from store import migrate
from store.db import create_engine, is_sqlite, session_factory
from store.models import Operator, OperatorAction, utcnow
from store.repos import operators as operators_repo

_hasher = PasswordHasher()
ROLES = ("operator", "supervisor", "admin")


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return _hasher.hash(password)


def check_password(stored: str, password: str) -> bool:
    """True when `password` matches the stored hash (constant-time inside argon2)."""
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def add_operator(
    settings: Settings, username: str, password: str, role: str, display_name: str | None = None
) -> None:
    """Create an operator or reset an existing one's password and role."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if is_sqlite(settings.database_url):
        migrate.upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            op = await operators_repo.by_username(session, username)
            if op is None:
                op = Operator(username=username, password_hash="", role=role)
            op.password_hash = hash_password(password)
            op.role = role
            op.display_name = display_name or op.display_name
            op.failed_logins = 0
            op.locked_until = None
            session.add(op)
            await session.commit()
    finally:
        await engine.dispose()


# Login with lock-out ------------------------------------------------------------------------

_DUMMY_HASH = _hasher.hash("paht-timing-equaliser")


@dataclass(frozen=True)
class LoginResult:
    """What a login attempt came to: the operator on success, or why not."""

    operator: Operator | None
    error: str | None = None  # "bad_credentials" | "locked" | "disabled"


async def attempt_login(
    session: AsyncSession, settings: Settings, username: str, password: str, ip: str = ""
) -> LoginResult:
    """Check credentials, count failures in the lock-out window, lock after too many.

    Every attempt is written to the audit log (login, login_failed, locked); the caller
    commits. A locked account refuses even the right password until the lock expires.
    """
    now = utcnow()
    op = await operators_repo.by_username(session, username)
    if op is None:
        await asyncio.to_thread(check_password, _DUMMY_HASH, password)  # same timing
        session.add(OperatorAction(action="login_failed", note=f"unknown user ({ip})"[:200]))
        return LoginResult(None, "bad_credentials")
    if op.locked_until is not None and op.locked_until > now:
        session.add(OperatorAction(operator_id=op.id, action="login_refused",
                                   note=f"locked ({ip})"))
        return LoginResult(None, "locked")
    ok = await asyncio.to_thread(check_password, op.password_hash, password)
    if ok and not op.active:
        session.add(OperatorAction(operator_id=op.id, action="login_refused",
                                   note=f"disabled ({ip})"))
        return LoginResult(None, "disabled")
    if ok:
        op.failed_logins = 0
        op.locked_until = None
        session.add(op)
        session.add(OperatorAction(operator_id=op.id, action="login", note=ip or None))
        return LoginResult(op)
    window = timedelta(minutes=settings.login_lockout_minutes)
    failures = await operators_repo.recent_login_failures(session, op.id or 0,
                                                          now - window) + 1
    session.add(OperatorAction(operator_id=op.id, action="login_failed", note=ip or None))
    op.failed_logins = failures
    if failures >= settings.login_max_failures:
        op.locked_until = now + window
        op.failed_logins = 0
        await session.flush()
        session.add(OperatorAction(operator_id=op.id, action="locked",
                                   after={"until": op.locked_until.isoformat()}))
    session.add(op)
    return LoginResult(None, "locked" if op.locked_until and op.locked_until > now
                       else "bad_credentials")
