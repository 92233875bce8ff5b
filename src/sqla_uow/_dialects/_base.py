"""`Backend`: what sqla_uow asks of a database, with the behaviour of a generic SQL one."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Insert
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import Column
from sqlalchemy.sql import FromClause, Select

from sqla_uow.exceptions import UnsupportedDialectError

if TYPE_CHECKING:
    from sqla_uow._model import ModelMeta

__all__ = ["Backend"]


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
        self.driver: str = dialect.driver
        """The DBAPI driver's name as SQLAlchemy spells it (``asyncpg``, ``psycopg``, ...)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.dialect.name}+{self.driver}>"

    # -- transactions: engine hooks, begin, read-only, locking -----------------------
    # (transaction behaviour goes here)

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

    def row_sources(
        self,
        columns: Sequence[Column[Any]],
        value_rows: list[tuple[Any, ...]],
        chunk_size: int | None,
    ) -> Iterator[tuple[FromClause, dict[str, Any]]]:
        """Row sources ``v(c0, c1, ...)`` of *value_rows* (driver values) with parameters.

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
    ) -> Insert:
        """``INSERT ... ON CONFLICT`` (or the database's form) into *meta*'s table.

        *targets* are the attributes to overwrite (none: leave the existing row alone);
        *source* the columns and a SELECT of the rows (from `row_sources`) for an
        ``INSERT ... SELECT``; without it the statement takes its rows as parameters.

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
    # (error classification goes here)
