"""The PostgreSQL backend."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import ColumnElement, any_, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles

from sqla_uow.exceptions import ConflictKind

from ._base import Backend
from ._diagnostics import constraint_columns, sqlstate
from ._elements import NullFlag, native_null_flag

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
    # SQLSTATEs, which asyncpg and psycopg both report.

    driver_modules: ClassVar[tuple[str, ...]] = ("asyncpg", "psycopg")
    conflicts: ClassVar[dict[str | int, ConflictKind]] = {
        "23505": "unique",
        "23503": "foreign_key",
        "23502": "not_null",
        "23514": "check",
        "23P01": "exclusion",
    }
    retryable: ClassVar[frozenset[str | int]] = frozenset(
        {"40001", "40P01"}  # serialization_failure, deadlock_detected
    )

    @classmethod
    def error_code(cls, err: BaseException) -> str | int | None:
        """The SQLSTATE."""
        return sqlstate(err)

    @classmethod
    def is_unmatched_conflict_target(cls, err: BaseException) -> bool:
        """SQLSTATE 42P10 (invalid_column_reference)."""
        return sqlstate(err) == "42P10"

    @classmethod
    def conflict_context(
        cls,
        chain: Sequence[BaseException],
        err: BaseException,
        kind: ConflictKind,
        model: type[Any] | None,
    ) -> tuple[str | None, tuple[str, ...]]:
        """The constraint and column the server's diagnostics name (asyncpg, psycopg)."""
        constraint = _diagnostic(chain, "constraint_name")
        columns = constraint_columns(model, constraint, cls.default_constraint_names)
        if not columns and (column := _diagnostic(chain, "column_name")) is not None:
            columns = (column,)
        return constraint, columns

    @classmethod
    def default_constraint_names(
        cls, table: str, columns: tuple[str, ...], primary: bool
    ) -> tuple[str, ...]:
        """``<table>_pkey``, ``<table>_<col>_<col>_key``."""
        return (f"{table}_pkey",) if primary else (_default_name(table, columns, "key"),)

    # -- reads: IN lists, NULL ordering, keyset, value rules ----------------------------

    integer_bits: ClassVar[int] = 32

    def in_list(self, column: ColumnElement[Any], values: list[Any]) -> ColumnElement[bool]:
        """``column = ANY(:array)``: one parameter whatever the length (the statement stays
        cacheable); ``IN (...)`` for a list holding ``None`` or none at all."""
        if values and None not in values:
            array = bindparam(None, _one_number_type(values), type_=ARRAY(column.type), unique=True)
            return column == any_(array)
        return column.in_(values)


# PostgreSQL sorts NULL as the greatest value: the NULL flag of an ordering is the
# column itself (see `NullFlag`).
compiles(NullFlag, "postgresql")(native_null_flag)


def _diagnostic(chain: Sequence[BaseException], field: str) -> str | None:
    """A field of the server's error report: an attribute (asyncpg) or ``diag``'s (psycopg)."""
    for err in chain:
        for source in (err, getattr(err, "diag", None)):
            value = getattr(source, field, None)
            if isinstance(value, str):
                return value
    return None


# PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN - 1).
_MAX_IDENTIFIER = 63


def _default_name(table: str, columns: tuple[str, ...], label: str) -> str:
    """The name PostgreSQL gives an unnamed constraint: ``<table>_<col>_<col>_<label>``.

    Follows PostgreSQL's ``makeObjectName``: when the name would be too long, the
    longer of the table part and the column part is shortened first.
    """
    name1, name2 = table, "_".join(columns)
    available = _MAX_IDENTIFIER - len(label) - 2
    len1, len2 = len(name1), len(name2)
    while len1 + len2 > available:
        if len1 > len2:
            len1 -= 1
        else:
            len2 -= 1
    return f"{name1[:len1]}_{name2[:len2]}_{label}"


def _one_number_type(values: list[Any]) -> list[Any]:
    """*values* with mixed ``int`` / ``float`` / ``Decimal`` made one type, for an array.

    A driver sends a list as an array of one element type: psycopg refuses a list that
    mixes numbers of different Python types (asyncpg converts each element), so
    ``[Decimal("9.99"), 1]`` and ``[0.5, 2]`` become lists of ``Decimal`` (exact, and
    cast to the column's type by the statement). Other lists are returned as they are.
    """
    kinds: set[type] = {type(value) for value in values}
    if len(kinds) < 2 or not kinds <= {int, float, Decimal}:
        return values
    return [value if isinstance(value, Decimal) else Decimal(str(value)) for value in values]
