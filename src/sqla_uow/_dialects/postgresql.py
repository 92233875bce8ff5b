"""The PostgreSQL backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    Enum,
    Float,
    Insert,
    Integer,
    Interval,
    Numeric,
    String,
    Text,
    Time,
    Uuid,
    any_,
    bindparam,
    case,
    cast,
    column,
    extract,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, REGCLASS
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import Column, Table
from sqlalchemy.sql import FromClause, Select

from sqla_uow._compat import raise_driver_error
from sqla_uow.exceptions import ConflictKind

from ._base import Backend, chunk_sizes, on_conflict, rows_per_statement, timeout_ms
from ._diagnostics import constraint_columns, sqlstate
from ._elements import NullFlag, UtcNow, native_null_flag
from ._pg_copy import asyncpg_copy, psycopg_copy, psycopg_copy_types
from ._values import bind_values, shaped_values

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from sqla_uow._model import ModelMeta

__all__ = ["PostgreSQLBackend"]


class PostgreSQLBackend(Backend):
    """PostgreSQL."""

    name: ClassVar[str] = "PostgreSQL"

    # -- transactions -----------------------------------------------------------------
    supports_read_only: ClassVar[bool] = True
    wal_positions: ClassVar[bool] = True

    def begin_options(
        self, *, read_only: bool, apply_read_only: bool, guarded: bool, timeout: float | None = None
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

    supports_timeout: ClassVar[bool] = True

    async def begin_timeout(self, connection: AsyncConnection, seconds: float) -> Any:
        # Transaction-local: nothing to restore at the transaction's end.
        return await self.set_timeout(connection, seconds, first=False)

    async def set_timeout(self, connection: AsyncConnection, seconds: float, *, first: bool) -> Any:
        """``statement_timeout`` and ``lock_timeout``, transaction-local, in one round trip.

        ``set_config(..., true)`` is ``SET LOCAL``: the transaction's end resets both.
        """
        ms = str(timeout_ms(seconds))
        setters = [func.set_config(name, ms, true()) for name in _TIMEOUT_SETTINGS]
        if not first:
            await connection.execute(select(*setters))
            return None
        current = [func.current_setting(name) for name in _TIMEOUT_SETTINGS]
        return tuple((await connection.execute(select(*current, *setters))).one()[:2])

    async def reset_timeout(self, connection: AsyncConnection, saved: Any) -> None:
        setters = [
            func.set_config(name, value, true())
            for name, value in zip(_TIMEOUT_SETTINGS, saved, strict=True)
        ]
        await connection.execute(select(*setters))

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
        found = await connection.scalar(select(cast(func.pg_current_wal_lsn(), Text)))
        return self.parse_lsn(str(found))

    async def replica_position(self, connection: AsyncConnection) -> tuple[int | None, Any]:
        replayed_lsn = func.pg_last_wal_replay_lsn()
        behind = extract("epoch", func.now() - func.pg_last_xact_replay_timestamp())
        lag_seconds = case((func.pg_last_wal_receive_lsn() == replayed_lsn, 0), else_=behind)
        row = (await connection.execute(select(cast(replayed_lsn, Text), lag_seconds))).one()
        replayed: Any = row[0]  # NULL on a server that is not a standby
        return (None if replayed is None else self.parse_lsn(replayed)), row[1]

    # -- statements -------------------------------------------------------------------
    # update_many: UPDATE ... FROM a row source (asyncpg reports no row count for an
    # executemany); upsert_many: INSERT ... SELECT FROM a row source ON CONFLICT, whose
    # row count is exact. An ON CONFLICT target without a unique index aborts the
    # transaction, hence the savepoint.

    upsert_form: ClassVar[str | None] = "rows"
    updates_from_rows: ClassVar[bool] = True
    checks_conflict_target: ClassVar[bool] = True
    conflict_target_savepoint: ClassVar[bool] = True

    _UNNEST_TYPES: ClassVar[tuple[type[Any], ...]] = (
        Integer, String, Boolean, Float, Numeric, Date, DateTime, Time, Interval, Uuid,
    )  # fmt: skip
    _unnest_sources: ClassVar[dict[tuple[str, ...], FromClause]] = {}
    _values_sources: ClassVar[dict[tuple[str, ...], tuple[FromClause, tuple[str, ...]]]] = {}

    copy_min_rows: ClassVar[Mapping[str, int]] = {"asyncpg": 50, "psycopg": 20}
    """Rows from which the driver's COPY beats an executemany INSERT, per driver (measured:
    from about 5 rows with either)."""
    copy_create_min_rows: ClassVar[Mapping[str, int]] = {"asyncpg": 150, "psycopg": 50}
    """Rows from which `create_many` through COPY beats ``INSERT ... RETURNING``, per driver
    (measured: from about 150 with asyncpg, 25 with psycopg; it draws the keys in a
    statement of its own and builds the objects)."""
    _copy_types: ClassVar[dict[tuple[str, ...], tuple[str | None, ...]]] = {}

    def _plain(self, columns: Sequence[Column[Any]]) -> bool:
        """Whether every column is of a plain scalar type the driver binds as it is."""
        dialect = self.dialect
        return all(
            isinstance(col.type, self._UNNEST_TYPES)
            and col.type.dialect_impl(dialect).bind_processor(dialect) is None
            for col in columns
        )

    def copies(self, columns: Sequence[Column[Any]], count: int, *, create: bool = False) -> bool:
        """The drivers' COPY (asyncpg's binary ``copy_records_to_table``, psycopg's
        ``cursor.copy``), for columns of plain scalar types (enums, JSON, arrays and custom
        types excepted), whose values the caller passes through their bind processing (a
        ``Boolean``'s, say) first."""
        least = (self.copy_create_min_rows if create else self.copy_min_rows).get(self.driver)
        return (
            least is not None
            and count >= least
            and all(
                isinstance(col.type, self._UNNEST_TYPES) and not isinstance(col.type, Enum)
                for col in columns
            )
        )

    async def copy_rows(
        self,
        connection: AsyncConnection,
        table: Table,
        columns: Sequence[Column[Any]],
        value_rows: list[tuple[Any, ...]],
    ) -> None:
        """``COPY table (columns) FROM STDIN`` on the session's own connection: asyncpg's
        ``copy_records_to_table`` (binary), or psycopg's ``cursor.copy`` (binary where the
        values allow, see `psycopg_copy`)."""
        names = [col.name for col in columns]
        preparer = self.dialect.identifier_preparer
        statement = (
            f"COPY {preparer.format_table(table)} "
            f"({', '.join(preparer.quote(name) for name in names)}) FROM STDIN"
        )
        raw = await connection.get_raw_connection()
        dbapi_connection = raw.dbapi_connection
        try:
            if self.driver == "psycopg":
                await psycopg_copy(
                    raw.driver_connection, statement, self._psycopg_types(columns), value_rows
                )
            else:
                statement += " (FORMAT binary)"
                await asyncpg_copy(dbapi_connection, table, names, value_rows)
        except Exception as error:
            await connection.run_sync(raise_driver_error, dbapi_connection, error, statement)

    def _psycopg_types(self, columns: Sequence[Column[Any]]) -> tuple[str | None, ...]:
        """`psycopg_copy_types` of *columns*, cached per compiled types."""
        key = self._casts(columns)
        if key not in self._copy_types:
            if len(self._copy_types) >= 64:
                self._copy_types.clear()
            self._copy_types[key] = psycopg_copy_types(self.dialect, columns)
        return self._copy_types[key]

    def next_keys(self, key: Column[Any]) -> Select[Any] | None:
        """``SELECT array_agg(nextval(pg_get_serial_sequence(table, column)))`` from
        ``generate_series(1, :count)``: one row, whatever the count."""
        table = self.dialect.identifier_preparer.format_table(key.table)
        sequence = func.pg_get_serial_sequence(literal(table), literal(key.name))
        drawn = func.nextval(cast(sequence, REGCLASS), type_=BigInteger)
        return select(func.array_agg(drawn, type_=ARRAY(BigInteger))).select_from(
            func.generate_series(1, bindparam("count"))
        )

    def row_sources(
        self,
        columns: Sequence[Column[Any]],
        names: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
        chunk_size: int | None,
    ) -> Iterator[tuple[FromClause, dict[str, Any]]]:
        """Columns of plain scalar types travel as one array per column.

        ``unnest(CAST(:a0 AS type[]), ...) AS v(c0, ...)``: a statement of a fixed
        shape, prepared once, whatever the number of rows. Other types (JSON, enums,
        custom types with bind processing) go through a ``VALUES`` list, chunked by
        the bind-parameter limit.
        """
        if self._plain(columns):
            # Plain types bind as they are: each array is read straight off the rows.
            source = self._unnest_source(columns)
            per_statement = chunk_size or len(rows)
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                arrays = {f"a{j}": [row[name] for row in chunk] for j, name in enumerate(names)}
                yield source, arrays
            return
        value_rows = bind_values(self.dialect, columns, names, rows)
        width = len(columns)
        per_statement = rows_per_statement(self.max_parameters, width, chunk_size, None)
        start = 0
        for size in chunk_sizes(len(value_rows), per_statement):
            part = value_rows[start : start + size]
            start += size
            source, binds = self._values_source(columns, size)
            flat = [value for row in part for value in row]
            yield source, dict(zip(binds, flat, strict=True))

    def _casts(self, columns: Sequence[Column[Any]]) -> tuple[str, ...]:
        return tuple(str(col.type.compile(dialect=self.dialect)) for col in columns)

    def _unnest_source(self, columns: Sequence[Column[Any]]) -> FromClause:
        """``(SELECT v0.c0, ... FROM unnest(CAST(:a0 AS type[]), ...) AS v0(c0, ...)) AS v``."""
        cache_key = self._casts(columns)
        source = self._unnest_sources.get(cache_key)
        if source is None:
            arrays = [cast(bindparam(f"a{j}"), ARRAY(col.type)) for j, col in enumerate(columns)]
            rows = (
                func.unnest(*arrays)
                .table_valued(*(column(f"c{j}", col.type) for j, col in enumerate(columns)))
                .render_derived(name="v0")
            )
            source = select(*rows.c).subquery("v")
            if len(self._unnest_sources) >= 64:
                self._unnest_sources.clear()
            self._unnest_sources[cache_key] = source
        return source

    def _values_source(
        self, columns: Sequence[Column[Any]], count: int
    ) -> tuple[FromClause, tuple[str, ...]]:
        """``(SELECT v0.c0, ... FROM (VALUES ...) AS v0 (c0, ...)) AS v`` of *count* rows.

        Cached per shape (see `shaped_values`).
        The first row casts each bind to its column's type, which types the whole list;
        the binds carry driver values (no bind processing of their own).
        """
        cache_key = (*self._casts(columns), str(count))
        cached = self._values_sources.get(cache_key)
        if cached is not None:
            return cached
        width = len(columns)
        names = tuple(f"p{i}_{j}" for i in range(count) for j in range(width))
        binds: list[Any] = [bindparam(name) for name in names]
        rows: list[tuple[Any, ...]] = [
            tuple(binds[i * width : (i + 1) * width]) for i in range(count)
        ]
        rows[0] = tuple(cast(bind, col.type) for bind, col in zip(rows[0], columns, strict=True))
        data = shaped_values(
            [column(f"c{j}", col.type) for j, col in enumerate(columns)],
            rows,
            shape=cache_key,
            name="v0",
        )
        source = select(*data.c).subquery("v")
        if len(self._values_sources) >= 64:
            self._values_sources.clear()
        self._values_sources[cache_key] = (source, names)
        return source, names

    def upsert_statement(
        self,
        meta: ModelMeta,
        conflict: Sequence[str],
        targets: Sequence[str],
        source: tuple[Sequence[Column[Any]], Select[Any]] | None = None,
        where: ColumnElement[bool] | None = None,
    ) -> Insert:
        """``INSERT ... ON CONFLICT (conflict) DO UPDATE SET`` / ``DO NOTHING``."""
        assert meta.table is not None
        return on_conflict(pg_insert(meta.table), meta, conflict, targets, source, where)

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
    lock_not_available: ClassVar[frozenset[str | int]] = frozenset({"55P03"})
    statement_timeouts: ClassVar[frozenset[str | int]] = frozenset({"57014"})  # query_canceled

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

    lock_options: ClassVar[frozenset[str]] = frozenset({"nowait", "skip_locked", "of", "key_share"})
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


@compiles(UtcNow, "postgresql")
def _utc_now(element: UtcNow, compiler: Any, **kw: Any) -> str:
    """The time the statement began (``now()`` would be the transaction's)."""
    return "statement_timestamp()"


def _diagnostic(chain: Sequence[BaseException], field: str) -> str | None:
    """A field of the server's error report: an attribute (asyncpg) or ``diag``'s (psycopg)."""
    for err in chain:
        for source in (err, getattr(err, "diag", None)):
            value = getattr(source, field, None)
            if isinstance(value, str):
                return value
    return None


_TIMEOUT_SETTINGS = ("statement_timeout", "lock_timeout")
"""What bounds a transaction's statements: their run time, and their waits for locks."""

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
