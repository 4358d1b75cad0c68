"""Operator accounts: argon2 password hashes, creation from the CLI, verification at login."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import select

from gateway.settings import Settings
from store import migrate
from store.db import create_engine, is_sqlite, session_factory
from store.models import Operator

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
            op = (await session.exec(select(Operator).where(Operator.username == username))).first()
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
