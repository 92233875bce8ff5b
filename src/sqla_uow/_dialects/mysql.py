"""The MySQL / MariaDB backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Insert
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.schema import Column
from sqlalchemy.sql import Select

from ._base import Backend

if TYPE_CHECKING:
    from sqla_uow._model import ModelMeta

__all__ = ["MySQLBackend"]


class MySQLBackend(Backend):
    """MySQL / MariaDB."""

    name: ClassVar[str] = "MySQL / MariaDB"

    # -- transactions -----------------------------------------------------------------
    # (transaction behaviour goes here)

    # -- statements -------------------------------------------------------------------
    # upsert_many: INSERT ... ON DUPLICATE KEY UPDATE, which fires on any unique key (no
    # conflict target to check), in insertmanyvalues pages with RETURNING (MariaDB) to
    # count the rows.

    upsert_form: ClassVar[str | None] = "returning"

    def upsert_statement(
        self,
        meta: ModelMeta,
        conflict: Sequence[str],
        targets: Sequence[str],
        source: tuple[Sequence[Column[Any]], Select[Any]] | None = None,
    ) -> Insert:
        """``INSERT ... ON DUPLICATE KEY UPDATE`` (a no-op update for no *targets*)."""
        assert meta.table is not None
        columns = meta.columns
        statement = mysql_insert(meta.table)
        if source is not None:
            statement = statement.from_select(list(source[0]), source[1])
        if targets:
            # Column keys, not Column objects: older SQLAlchemy 2.0 releases match only
            # strings here.
            return statement.on_duplicate_key_update(
                {columns[name].key: statement.inserted[columns[name].key] for name in targets}
            )
        first = columns[conflict[0]]
        return statement.on_duplicate_key_update({first.key: first})

    # -- errors -----------------------------------------------------------------------
    # (error classification goes here)
