"""`Backend`: what sqla_uow asks of a database, with the behaviour of a generic SQL one."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from sqlalchemy import ColumnElement, DateTime, Insert, event
from sqlalchemy.dialects.postgresql import dml as pg_dml
from sqlalchemy.dialects.sqlite import dml as sqlite_dml
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import Column, Table
from sqlalchemy.sql import FromClause, Select
from sqlalchemy.types import TypeEngine

from sqla_uow.exceptions import ConflictKind, IllegalTransactionStateError, UnsupportedDialectError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.ext.asyncio import AsyncConnection
    from sqlalchemy.pool import ConnectionPoolEntry

    from sqla_uow._model import ModelMeta

__all__ = ["Backend", "chunk_sizes", "on_conflict", "rows_per_statement", "timeout_ms"]

_RESTORE_KEY: Final = "sqla_uow_restore_on_checkin"
"""Key in a pooled connection's ``info``: SQL that restores its settings at check-in."""


class Backend:
    """What differs between databases and drivers, for one dialect.

    The defaults describe a generic SQL database; each backend module overrides what
    its database or driver does differently. One instance per dialect object
    (`backend_for`).
    """

    name: ClassVar[str] = "generic"
    """The backend's name in messages."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.driver: str = getattr(dialect, "driver", "")
        """The DBAPI driver's name as SQLAlchemy spells it (``asyncpg``, ``psycopg``, ...)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.dialect.name}+{self.driver}>"

    # -- transactions: engine hooks, begin, read-only, locking -----------------------
    supports_read_only: ClassVar[bool] = False
    """Whether a transaction can begin read-only (``transaction(read_only=True)``)."""

    one_writer: ClassVar[bool] = False
    """One writer at a time: a transaction that begins while an enclosing one is open
    may wait for the enclosing one's lock forever, so it begins *guarded* (waits
    briefly, then fails with `locked_error`)."""

    wal_positions: ClassVar[bool] = False
    """Whether replicas report the primary's log positions they replayed
    (`primary_position`, `replica_position`), for read-your-writes and lag."""

    def install_transaction_hooks(self, engine: Engine) -> None:
        """Install the engine hooks the backend's transactions need; once per engine."""
        event.listen(engine, "checkin", Backend._restore_on_checkin)

    @staticmethod
    def restore_at_checkin(info: dict[Any, Any], statement: str) -> None:
        """Run *statement* on the pooled connection of *info* when it is checked in."""
        pending: list[str] = info.setdefault(_RESTORE_KEY, [])
        if statement not in pending:
            pending.append(statement)

    @staticmethod
    def pending_restores(info: dict[Any, Any]) -> list[str]:
        """The statements `restore_at_checkin` queued on the connection of *info*."""
        pending: list[str] = info.get(_RESTORE_KEY, [])
        return pending

    @staticmethod
    def _restore_on_checkin(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
        statements: list[str] | None = connection_record.info.pop(_RESTORE_KEY, None)
        if not statements or dbapi_connection is None:
            return
        cursor = dbapi_connection.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()

    @functools.cached_property
    def isolation_levels(self) -> tuple[str, ...]:
        """The isolation levels a transaction may ask for, as SQLAlchemy spells them."""
        try:
            values = tuple(self.dialect.get_isolation_level_values(None))  # type: ignore[arg-type]
        except (NotImplementedError, AttributeError, TypeError):
            values = ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED")
        return tuple(v for v in values if v != "AUTOCOMMIT")

    def begin_options(
        self, *, read_only: bool, apply_read_only: bool, guarded: bool, timeout: float | None = None
    ) -> dict[str, Any]:
        """Execution options for the connection a transaction begins on.

        *apply_read_only*: the transaction really begins (not as a SAVEPOINT of an outer
        one) and read-only is to be applied. *guarded*: it begins inside an open one
        on a `one_writer` database. *timeout*: the transaction's timeout in seconds,
        for a backend that applies it at ``BEGIN`` (others use `begin_timeout`).
        """
        return {}

    async def begin_read_only(self, connection: AsyncConnection) -> None:
        """Make the transaction just begun on *connection* read-only (after BEGIN)."""

    # -- per-transaction timeouts ---------------------------------------------------
    supports_timeout: ClassVar[bool] = False
    """Whether a transaction can bound its statements (``transaction(timeout=...)``)."""

    async def begin_timeout(self, connection: AsyncConnection, seconds: float) -> Any:
        """Bound the statements of the transaction just begun on *connection* to *seconds*.

        Returns what `reset_timeout` needs (see `set_timeout`). The setting ends with
        the transaction: transaction-local, or restored when the connection goes back
        to the pool.
        """
        return await self.set_timeout(connection, seconds, first=True)

    async def set_timeout(self, connection: AsyncConnection, seconds: float, *, first: bool) -> Any:
        """Bound the statements of *connection*'s open transaction to *seconds*.

        *first*: the transaction had no timeout yet; returns what `reset_timeout`
        needs to bring back the setting in force before (otherwise ``None``).
        """
        raise NotImplementedError(f"{self.name} has no statement timeout")

    async def reset_timeout(self, connection: AsyncConnection, saved: Any) -> None:
        """Bring back the setting a `set_timeout` with ``first=True`` replaced (*saved*)."""
        raise NotImplementedError(f"{self.name} has no statement timeout")

    def is_busy(self, error: BaseException) -> bool:
        """Whether *error* says that the database is locked by another transaction."""
        return False

    def locked_error(self, what: str) -> IllegalTransactionStateError:
        """The error for a guarded transaction that found the database locked."""
        return IllegalTransactionStateError(
            f"{what}: the database is locked, most likely by an enclosing transaction that "
            "is still open (the suspended outer transaction of this task, or the "
            f"transaction of the task that created this one). {self.name} allows one "
            "writer at a time, and the enclosing transaction cannot finish while it waits "
            "for this one; write in the enclosing transaction, use Propagation.NESTED, or "
            "run this work after it ends"
        )

    def memory_database(self, url: URL) -> bool:
        """Whether *url* names a database that lives only as long as its one connection."""
        return False

    def transaction_pooler_connect_args(self) -> dict[str, Any] | None:
        """Driver options that keep no prepared statement past its transaction (PgBouncer).

        None where the backend or driver has no known settings.
        """
        return None

    async def primary_position(self, connection: AsyncConnection) -> int:
        """The primary's current log position (only where `wal_positions`)."""
        raise NotImplementedError(f"{self.name} has no WAL positions")

    async def replica_position(self, connection: AsyncConnection) -> tuple[int | None, Any]:
        """A replica's replayed log position (None: not a standby) and lag in seconds."""
        raise NotImplementedError(f"{self.name} has no WAL positions")

    # -- statements: bulk writes, keyset, NULL ordering, limits ----------------------
    bulk_options: ClassVar[Mapping[str, Any]] = {"preserve_rowcount": True}
    """Execution options of every bulk statement. ``preserve_rowcount``: SQLAlchemy closes
    the cursor of an INSERT without RETURNING before its row count is read, and a driver
    may reset the count on close (psycopg does); with the option the count is read first."""

    upsert_form: ClassVar[str | None] = None
    """How `upsert_many` sends its rows (None: the database has no upsert): ``"returning"``
    (insertmanyvalues pages with RETURNING, counting the rows returned),
    ``"executemany"`` (the compiled statement, executemany through the driver, which
    counts the rows written) or ``"rows"`` (one
    ``INSERT ... SELECT`` from `row_sources` per chunk)."""
    insert_values: ClassVar[bool] = False
    """Whether `insert_many` sends each chunk as one multi-row ``INSERT ... VALUES``
    through the driver (bind processing done by the library; the placeholders of the
    dialect's ``paramstyle`` are not numbered), instead of SQLAlchemy's executemany."""
    checks_conflict_target: ClassVar[bool] = False
    """Whether the database refuses an ``ON CONFLICT`` target no unique index matches
    (MySQL's ``ON DUPLICATE KEY`` has no target)."""
    updates_from_rows: ClassVar[bool] = False
    """Whether `update_many` sends ``UPDATE ... FROM`` the `row_sources` (otherwise an
    executemany ``UPDATE ... WHERE pk = ?``)."""
    conflict_target_savepoint: ClassVar[bool] = False
    """Whether that refusal aborts the transaction, so the statement needs a savepoint."""

    @property
    def max_parameters(self) -> int:
        """Bound parameters one statement may carry."""
        limit = getattr(self.dialect, "insertmanyvalues_max_parameters", 32700)
        return int(limit) if isinstance(limit, int) and limit > 0 else 32700

    def assigns_keys(self, meta: ModelMeta) -> bool:
        """Whether `create_many` of *meta*'s rows goes through `create_statement`.

        Otherwise it uses SQLAlchemy's insertmanyvalues, which returns rows in
        parameter order.
        """
        return False

    def create_statement(
        self, meta: ModelMeta, names: Sequence[str], count: int, *, generated: bool
    ) -> tuple[Insert, tuple[str, ...]]:
        """An ``INSERT ... RETURNING`` of *count* rows of *names* that assigns the keys itself.

        *generated*: the rows lack the model's `ModelMeta.rowid_key`, which the
        statement computes. Returns the statement and its parameter names, row by row.
        """
        raise NotImplementedError(f"{self.name} has no key-assigning INSERT")

    def copies(self, columns: Sequence[Column[Any]], count: int, *, create: bool = False) -> bool:
        """Whether `copy_rows` takes *count* rows of *columns*, and is faster there than INSERT.

        False where the driver has no bulk-copy protocol, a column's values need
        conversions it cannot make, or *count* is too small to pay for the extra round
        trips. *create*: for `create_many`, which also draws keys and builds objects.
        """
        return False

    async def copy_rows(
        self,
        connection: AsyncConnection,
        table: Table,
        columns: Sequence[Column[Any]],
        value_rows: list[tuple[Any, ...]],
    ) -> None:
        """Load *value_rows* (driver values of *columns*) into *table* through the driver's
        bulk-copy protocol, inside *connection*'s transaction (only where `copies`).

        Columns of *table* not in *columns* get their server-side defaults. A failure is
        raised as SQLAlchemy raises a failed statement's (``IntegrityError``, ...), through
        the engine's ``handle_error`` hooks.
        """
        raise NotImplementedError(f"{self.name} has no bulk copy")

    def next_keys(self, key: Column[Any]) -> Select[Any] | None:
        """A SELECT of one row: an array of ``:count`` fresh values of *key*'s sequence.

        They are ``NULL`` when the column draws from no sequence; None when the database
        has no sequences.
        """
        return None

    def row_sources(
        self,
        columns: Sequence[Column[Any]],
        names: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
        chunk_size: int | None,
    ) -> Iterator[tuple[FromClause, dict[str, Any]]]:
        """Row sources ``v(c0, c1, ...)`` of the values of *names* (of *columns*) in
        *rows*, with parameters (driver values: the columns' bind processing applied).

        One per statement, for ``UPDATE ... FROM`` and ``INSERT ... SELECT`` (see
        `updates_from_rows` and `upsert_form`).
        """
        raise NotImplementedError(f"{self.name} has no row sources")

    def upsert_statement(
        self,
        meta: ModelMeta,
        conflict: Sequence[str],
        targets: Sequence[str],
        source: tuple[Sequence[Column[Any]], Select[Any]] | None = None,
        where: ColumnElement[bool] | None = None,
    ) -> Insert:
        """``INSERT ... ON CONFLICT`` (or the database's form) into *meta*'s table.

        *targets* are the attributes to overwrite (none: leave the existing row alone);
        *source* the columns and a SELECT of the rows (from `row_sources`) for an
        ``INSERT ... SELECT``; without it the statement takes its rows as parameters.
        *where*: an existing row is updated only when it matches (a repository's scope);
        otherwise it is left as it is.

        """
        raise NotImplementedError(f"{self.name} has no upsert")

    def check_upsert(self) -> None:
        """Refuse `upsert_many` on a database without a native upsert SQLAlchemy knows.

        Raises:
            UnsupportedDialectError: No `upsert_form`.
        """
        if self.upsert_form is not None:
            return
        raise UnsupportedDialectError(
            "upsert_many supports PostgreSQL, SQLite and MySQL / MariaDB; "
            f"this database is {self.dialect.name}",
            dialect=self.dialect.name,
        )

    # -- errors: code tables and classification ---------------------------------------
    # Class-level: an error may arrive without a dialect at hand (``@transactional``'s
    # retry loop), so `sqla_uow._errors` asks every backend class whether an error is
    # one of its drivers'.

    driver_modules: ClassVar[tuple[str, ...]] = ()
    """Top-level modules of this backend's drivers: their exceptions are this backend's."""
    conflicts: ClassVar[dict[str | int, ConflictKind]] = {}
    """The error codes of integrity violations, by the kind of rule violated."""
    retryable: ClassVar[frozenset[str | int]] = frozenset()
    """The error codes of serialization failures and deadlocks (worth a retry)."""
    lock_not_available: ClassVar[frozenset[str | int]] = frozenset()
    """The error codes of a row lock that could not be taken (NOWAIT, lock wait timeout)."""
    statement_timeouts: ClassVar[frozenset[str | int]] = frozenset()
    """The error codes of a statement the server stopped (inside a transaction with a
    timeout, `TransactionTimeoutError`)."""

    @classmethod
    def lock_or_timeout(cls, code: str | int) -> str | None:
        """``"lock"`` for a lock not available, ``"timeout"`` for a statement stopped."""
        if code in cls.lock_not_available:
            return "lock"
        if code in cls.statement_timeouts:
            return "timeout"
        return None

    @classmethod
    def owns(cls, err: BaseException) -> bool:
        """Whether *err* was raised by one of this backend's drivers."""
        return type(err).__module__.partition(".")[0] in cls.driver_modules

    @classmethod
    def error_code(cls, err: BaseException) -> str | int | None:
        """The error code of *err*, an exception this backend `owns` (``None``: it has none)."""
        return None

    @classmethod
    def reported_code(cls, err: BaseException, code: str | int) -> str | int | None:
        """The code `ConflictError.code` shows: *code*, unless the driver did not report it."""
        return code

    @classmethod
    def is_unmatched_conflict_target(cls, err: BaseException) -> bool:
        """Whether *err* (which this backend `owns`) refuses an unmatched ``ON CONFLICT`` target.

        That is a target no unique key of the table matches.
        """
        return False

    @classmethod
    def conflict_context(
        cls,
        chain: Sequence[BaseException],
        err: BaseException,
        kind: ConflictKind,
        model: type[Any] | None,
    ) -> tuple[str | None, tuple[str, ...]]:
        """(constraint name, column names) an integrity violation *err* names, if it does.

        *chain* is the whole error chain *err* was found in; *model* the model written.
        """
        return None, ()

    @classmethod
    def default_constraint_names(
        cls, table: str, columns: tuple[str, ...], primary: bool
    ) -> tuple[str, ...]:
        """The names the database gives an unnamed (*primary*) key over *columns* of *table*."""
        return ()

    # -- timestamps: the column type and clock of TimestampMixin ------------------------

    naive_utc_datetimes: ClassVar[bool] = False
    """Whether `utc_datetime_type` stores naive datetimes (meant as UTC): values are
    bound without their time zone and read back as UTC."""

    def utc_datetime_type(self) -> TypeEngine[Any]:
        """The column type of an aware UTC timestamp, with microseconds where it can."""
        return DateTime(timezone=True)

    # -- reads: row locks, IN lists, NULL ordering, keyset, value rules -----------------

    row_locks: ClassVar[bool] = True
    """Whether the database locks rows (``SELECT ... FOR UPDATE``); without, ``for_update=``
    is checked and otherwise ignored."""
    lock_options: ClassVar[frozenset[str]] = frozenset()
    """The `ForUpdate` options the database has: ``nowait``, ``skip_locked``, ``of``,
    ``key_share``."""

    def check_lock_options(self, requested: Iterable[str]) -> None:
        """Refuse `ForUpdate` options (by name) the database does not have.

        Raises:
            UnsupportedDialectError: Naming the first such option and the database.
        """
        missing = [name for name in requested if name not in self.lock_options]
        if not missing:
            return
        takes = (
            "FOR UPDATE with " + ", ".join(sorted(self.lock_options))
            if self.lock_options
            else "only a plain FOR UPDATE"
        )
        raise UnsupportedDialectError(
            f"ForUpdate({missing[0]}=...) is not supported on {self.name}: {self.name} "
            f"takes {takes}; leave the option out there",
            dialect=self.dialect.name,
        )

    integer_bits: ClassVar[int] = 64
    """The width of a plain ``Integer`` column (``SmallInteger`` and ``BigInteger`` are
    16 and 64 bits everywhere); filter and key values are checked within it."""

    def in_list(self, column: ColumnElement[Any], values: list[Any]) -> ColumnElement[bool]:
        """``column IN values`` in the form that takes any number of values: ``IN (...)``."""
        return column.in_(values)

    def keyset_text(
        self, expression: ColumnElement[Any], column_type: TypeEngine[Any]
    ) -> ColumnElement[Any] | None:
        """The stored text a keyset orders and compares a column of *column_type* by.

        ``None``: the column itself, where the database orders and compares it as the
        value SQLAlchemy binds for it.
        """
        return None


def timeout_ms(seconds: float) -> int:
    """*seconds* as whole milliseconds, rounded up (at least 1: 0 means no timeout)."""
    return max(1, math.ceil(seconds * 1000))


def rows_per_statement(
    max_parameters: int, params_per_row: int, chunk_size: int | None, default: int | None
) -> int:
    """Rows one statement takes: *chunk_size* (or *default*) within the parameter limit."""
    by_limit = max(1, max_parameters // max(1, params_per_row))
    wanted = chunk_size if chunk_size is not None else default
    return by_limit if wanted is None else max(1, min(wanted, by_limit))


_EXACT_BELOW: Final = 32
"""Rows under which the last statement of a call takes them all, whatever their number."""


def chunk_sizes(count: int, per_statement: int) -> list[int]:
    """The rows of each statement for *count* rows, at most *per_statement* each.

    Full statements first, then the rest in descending powers of two, and the last
    fewer than 32 rows in one statement: a statement whose SQL grows with its rows
    (a ``VALUES`` list) then comes in a few dozen shapes at most, which SQLAlchemy
    compiles once each, instead of one new shape (compiled in time quadratic in its
    rows) for nearly every call.
    """
    sizes = [per_statement] * (count // per_statement)
    rest = count % per_statement
    while rest >= _EXACT_BELOW:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    if rest:
        sizes.append(rest)
    return sizes


_OnConflictInsert = TypeVar("_OnConflictInsert", pg_dml.Insert, sqlite_dml.Insert)


def on_conflict(
    statement: _OnConflictInsert,
    meta: ModelMeta,
    conflict: Sequence[str],
    targets: Sequence[str],
    source: tuple[Sequence[Column[Any]], Select[Any]] | None,
    where: ColumnElement[bool] | None = None,
) -> _OnConflictInsert:
    """*statement* (PostgreSQL's or SQLite's ``insert()``) as ``ON CONFLICT (conflict) DO
    UPDATE SET`` each of *targets* to the excluded row's value (and the columns of
    `ModelMeta.upsert_refresh` the targets leave out), or ``DO NOTHING`` without
    targets; rows from *source* (columns, select) when given; ``DO UPDATE ... WHERE
    where`` when given."""
    if source is not None:
        statement = statement.from_select(list(source[0]), source[1])
    index_elements = [meta.columns[name] for name in conflict]
    if not targets:
        return statement.on_conflict_do_nothing(index_elements=index_elements)
    set_: dict[Any, Any] = {
        meta.columns[name]: statement.excluded[meta.columns[name].key] for name in targets
    }
    for name, value in meta.upsert_refresh.items():
        if name not in targets:
            set_[meta.columns[name]] = value
    return statement.on_conflict_do_update(index_elements=index_elements, set_=set_, where=where)
