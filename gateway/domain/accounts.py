"""Operator accounts: argon2 password hashes, creation from the CLI, login checks."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.domain.login_guard import LoginGuard
from gateway.settings import Settings
from store import migrate
from store.db import create_engine, is_sqlite, session_factory
from store.models import Operator, OperatorAction
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


# Login ----------------------------------------------------------------------------------------

_DUMMY_HASH = _hasher.hash("paht-timing-equaliser")


@dataclass(frozen=True)
class LoginResult:
    """What a login attempt came to: the operator on success, or why not."""

    operator: Operator | None
    error: str | None = None  # always "bad_credentials": every failure answers the same


async def attempt_login(
    session: AsyncSession, settings: Settings, username: str, password: str, ip: str = "",
    guard: LoginGuard | None = None,
) -> LoginResult:
    """Check credentials; unknown, wrong, disabled all answer "bad_credentials".

    No account is locked: throttling is per (account, IP) in `LoginGuard`, before this runs.
    The password is checked (in a thread, within the guard's bounded slots) for unknown users
    too, so timing tells nothing. Failures are counted in the database with one atomic
    UPDATE; every attempt is written to the audit log. The caller commits; HashingBusy
    propagates when too many checks are running.
    """
    op = await operators_repo.by_username(session, username)
    stored = op.password_hash if op is not None else _DUMMY_HASH
    async with guard.hashing() if guard is not None else contextlib.nullcontext():
        ok = await asyncio.to_thread(check_password, stored, password)
    if op is None:
        session.add(OperatorAction(action="login_failed", note=f"unknown user ({ip})"[:200]))
        return LoginResult(None, "bad_credentials")
    if ok and op.active:
        await operators_repo.reset_login_failures(session, op.id or 0)
        session.add(OperatorAction(operator_id=op.id, action="login", note=ip or None))
        await session.refresh(op)
        return LoginResult(op)
    if ok:
        session.add(OperatorAction(operator_id=op.id, action="login_refused",
                                   note=f"disabled ({ip})"))
    else:
        await operators_repo.count_login_failure(session, op.id or 0)
        session.add(OperatorAction(operator_id=op.id, action="login_failed", note=ip or None))
    return LoginResult(None, "bad_credentials")
