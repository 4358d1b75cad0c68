"""Operator accounts, login failures and reads of the audit log (`OperatorAction`).

Writes of audit rows stay with the caller (`session.add(OperatorAction(...))`, committed with
the change they describe); this module only answers questions about them.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from store.models import Operator, OperatorAction, Report, table_of

# Actions after which the failed-login count starts again.
LOGIN_RESETS = ("login", "unlock", "locked")


class ActionRow(NamedTuple):
    """An audit row of one report with the operator's username (None: the system)."""

    action: OperatorAction
    username: str | None


class AuditRow(NamedTuple):
    """An audit-log line: the action, the operator's username and the report's code."""

    action: OperatorAction
    username: str | None
    code: str | None


async def by_username(session: AsyncSession, username: str) -> Operator | None:
    """The operator with this username, if any."""
    stmt = select(Operator).where(Operator.username == username)
    return (await session.exec(stmt)).first()


async def all_operators(session: AsyncSession) -> list[Operator]:
    """Every console account, by username."""
    return list((await session.exec(select(Operator).order_by(col(Operator.username)))).all())


async def usernames(session: AsyncSession) -> list[str]:
    """Every username, sorted."""
    stmt = select(Operator.username).order_by(col(Operator.username))
    return list((await session.exec(stmt)).all())


async def last_logout_at(session: AsyncSession, operator_id: int) -> datetime | None:
    """When the operator last logged out (sessions issued before that are void)."""
    stmt = (select(OperatorAction.at)
            .where(OperatorAction.operator_id == operator_id, OperatorAction.action == "logout")
            .order_by(col(OperatorAction.at).desc()).limit(1))
    return (await session.exec(stmt)).first()


async def recent_login_failures(session: AsyncSession, operator_id: int, since: datetime) -> int:
    """Failed logins since `since` and since the last successful login, unlock or lock."""
    last_reset = (await session.exec(
        select(OperatorAction.at)
        .where(OperatorAction.operator_id == operator_id,
               col(OperatorAction.action).in_(LOGIN_RESETS))
        .order_by(col(OperatorAction.at).desc()).limit(1)
    )).first()
    start = max(since, last_reset) if last_reset is not None else since
    stmt = select(func.count()).select_from(OperatorAction).where(
        OperatorAction.operator_id == operator_id, OperatorAction.action == "login_failed",
        col(OperatorAction.at) > start,
    )
    return int((await session.exec(stmt)).one())


async def count_login_failure(session: AsyncSession, operator_id: int) -> None:
    """One more failed login, counted atomically in the database (no read-modify-write)."""
    table = table_of(Operator)
    await session.exec(sa.update(table).where(table.c.id == operator_id)
                       .values(failed_logins=table.c.failed_logins + 1))


async def reset_login_failures(session: AsyncSession, operator_id: int) -> None:
    """A successful login: the failure count starts again (and any old lock is void)."""
    table = table_of(Operator)
    await session.exec(sa.update(table).where(table.c.id == operator_id)
                       .values(failed_logins=0, locked_until=None))


async def report_actions(session: AsyncSession, report_id: int) -> list[ActionRow]:
    """The audit trail of one report, oldest first."""
    stmt = (select(OperatorAction, Operator.username)
            .join(Operator, col(Operator.id) == col(OperatorAction.operator_id), isouter=True)
            .where(OperatorAction.report_id == report_id)
            .order_by(col(OperatorAction.at), col(OperatorAction.id)))
    return [ActionRow(a, name) for a, name in (await session.exec(stmt)).all()]


async def audit_page(
    session: AsyncSession, *, action: str | None = None, username: str | None = None,
    page: int = 1, page_size: int = 100,
) -> tuple[list[AuditRow], int]:
    """One page of the audit log, newest first, and how many lines match in all."""
    conds = []
    if action:
        conds.append(OperatorAction.action == action)
    if username:
        conds.append(Operator.username == username)
    base = (select(OperatorAction, Operator.username, Report.code)
            .join(Operator, col(Operator.id) == col(OperatorAction.operator_id), isouter=True)
            .join(Report, col(Report.id) == col(OperatorAction.report_id), isouter=True)
            .where(*conds))
    total = (await session.exec(select(func.count()).select_from(base.subquery()))).one()
    rows = (await session.exec(
        base.order_by(col(OperatorAction.at).desc(), col(OperatorAction.id).desc())
        .offset((max(page, 1) - 1) * page_size).limit(page_size)
    )).all()
    return [AuditRow(a, name, code) for a, name, code in rows], int(total)


async def sector_corrections(session: AsyncSession) -> list[tuple[OperatorAction, Report]]:
    """Every "change_sector" action with its report, oldest first."""
    stmt = (select(OperatorAction, Report)
            .join(Report, col(Report.id) == col(OperatorAction.report_id))
            .where(OperatorAction.action == "change_sector")
            .order_by(col(OperatorAction.at), col(OperatorAction.id)))
    return [(a, r) for a, r in (await session.exec(stmt)).all()]
