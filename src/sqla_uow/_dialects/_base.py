"""`Backend`: what sqla_uow asks of a database, with the behaviour of a generic SQL one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import ColumnElement
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from sqla_uow.exceptions import ConflictKind

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
    # (statement builders go here)

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

    # -- reads: IN lists, NULL ordering, keyset, value rules ----------------------------

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
