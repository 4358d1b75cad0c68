"""Rotating provider credentials (the channels' `TokenStore`) with optimistic versioning."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from store.db import insert_for
from store.models import (
    Credential,
    table_of,
    utcnow,
)


class DbTokenStore:
    """The channels' `TokenStore` on the `credential` table, with optimistic versioning."""

    def __init__(self, sessions: Any) -> None:
        self.sessions = sessions

    async def get(self, key: str) -> dict[str, Any] | None:
        """The stored value with its version under `_version`, or None."""
        async with self.sessions() as session:
            row = await session.get(Credential, key)
            if row is None:
                return None
            return {**row.value, "_version": row.version}

    async def put(self, key: str, value: Mapping[str, Any], expected_version: int | None) -> bool:
        """Replace atomically; False when another process changed it first."""
        data = {k: v for k, v in value.items() if k != "_version"}
        async with self.sessions() as session:
            if expected_version is None:
                stmt = (
                    insert_for(session, table_of(Credential))
                    .values(key=key, value=data, version=1, updated_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["key"])
                    .returning(table_of(Credential).c.key)
                )
                inserted = (await session.exec(stmt)).first() is not None
                await session.commit()
                return inserted
            table = table_of(Credential)
            result = await session.exec(
                sa.update(table)
                .where(table.c.key == key, table.c.version == expected_version)
                .values(value=data, version=expected_version + 1, updated_at=utcnow())
                .returning(table.c.key)
            )
            replaced = result.first() is not None
            await session.commit()
            return replaced
