"""The PostgreSQL backend."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import text

from ._base import Backend

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["PostgreSQLBackend"]


class PostgreSQLBackend(Backend):
    """PostgreSQL."""

    name: ClassVar[str] = "PostgreSQL"

    # -- transactions -----------------------------------------------------------------
    supports_read_only: ClassVar[bool] = True
    wal_positions: ClassVar[bool] = True

    def begin_options(
        self, *, read_only: bool, apply_read_only: bool, guarded: bool
    ) -> dict[str, Any]:
        # Part of the BEGIN statement (BEGIN ... READ ONLY): transaction-local.
        return {"postgresql_readonly": True} if read_only and apply_read_only else {}

    def transaction_pooler_connect_args(self) -> dict[str, Any] | None:
        if self.driver == "asyncpg":
            return {
                # asyncpg's own statement cache, and SQLAlchemy's cache of prepared
                # statements in its asyncpg adapter: both keep statements across
                # transactions.
                "statement_cache_size": 0,
                "prepared_statement_cache_size": 0,
                "prepared_statement_name_func": PostgreSQLBackend._asyncpg_statement_name,
            }
        if self.driver == "psycopg":
            # psycopg 3 prepares a statement after it ran `prepare_threshold` times;
            # None never.
            return {"prepare_threshold": None}
        return None

    @staticmethod
    def parse_lsn(value: str) -> int:
        """PostgreSQL's text form of a WAL position (``16/B374D848``) as an integer."""
        high, _, low = value.partition("/")
        return (int(high, 16) << 32) | int(low, 16)

    @staticmethod
    def _asyncpg_statement_name() -> str:
        # Unique per statement: names from asyncpg's per-connection counter collide on
        # a server connection that another client connection used before.
        return f"__asyncpg_{uuid.uuid4().hex}__"

    async def primary_position(self, connection: AsyncConnection) -> int:
        found = await connection.scalar(text("SELECT pg_current_wal_lsn()::text"))
        return self.parse_lsn(str(found))

    async def replica_position(self, connection: AsyncConnection) -> tuple[int | None, Any]:
        row = (
            await connection.execute(
                text(
                    "SELECT pg_last_wal_replay_lsn()::text, CASE WHEN pg_last_wal_receive_lsn()"
                    " = pg_last_wal_replay_lsn() THEN 0 ELSE EXTRACT(EPOCH FROM now() - "
                    "pg_last_xact_replay_timestamp()) END"
                )
            )
        ).one()
        replayed, lag = row
        return (None if replayed is None else self.parse_lsn(replayed)), lag

    # -- statements -------------------------------------------------------------------
    # (statement builders go here)

    # -- errors -----------------------------------------------------------------------
    # (error classification goes here)
