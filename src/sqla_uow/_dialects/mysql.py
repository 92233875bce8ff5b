"""The MySQL / MariaDB backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ._base import Backend

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["MySQLBackend"]


class MySQLBackend(Backend):
    """MySQL / MariaDB."""

    name: ClassVar[str] = "MySQL / MariaDB"

    # -- transactions -----------------------------------------------------------------
    supports_read_only: ClassVar[bool] = True

    async def begin_read_only(self, connection: AsyncConnection) -> None:
        await connection.exec_driver_sql("SET TRANSACTION READ ONLY")

    # -- statements -------------------------------------------------------------------
    # (statement builders go here)

    # -- errors -----------------------------------------------------------------------
    # (error classification goes here)
