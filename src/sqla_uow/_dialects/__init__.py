"""The dialect layer: one module per database backend behind one small interface.

`backend_for` picks the `Backend` of a SQLAlchemy dialect once (cached per dialect
object). Everything that differs between databases or drivers lives in the backend
modules — how a transaction begins and the engine hooks it needs, read-only
transactions, the statements of the bulk methods, keyset comparison and NULL ordering,
error-code tables, parameter limits. Outside this package no module tests a dialect or
driver name: it asks the backend.

Adding a backend: write a module with a `Backend` subclass, override what differs
from the defaults, and list it in `_BACKENDS` below.
"""

from __future__ import annotations

import weakref

from sqlalchemy.engine import Dialect

from ._base import Backend, chunk_sizes, rows_per_statement
from ._diagnostics import sqlstate
from ._elements import NullFlag, UtcNow
from ._values import bind_values
from .mysql import MySQLBackend
from .postgresql import PostgreSQLBackend
from .sqlite import SQLiteBackend

__all__ = [
    "Backend",
    "NullFlag",
    "UtcNow",
    "backend_classes",
    "backend_for",
    "bind_values",
    "chunk_sizes",
    "rows_per_statement",
    "sqlstate",
]

_BACKENDS: dict[str, type[Backend]] = {
    "sqlite": SQLiteBackend,
    "postgresql": PostgreSQLBackend,
    "mysql": MySQLBackend,
    "mariadb": MySQLBackend,
}

_CACHE: weakref.WeakKeyDictionary[Dialect, Backend] = weakref.WeakKeyDictionary()


def backend_for(dialect: Dialect) -> Backend:
    """The `Backend` of *dialect* (the generic one for a database sqla_uow does not know)."""
    backend = _CACHE.get(dialect)
    if backend is None:
        backend = _CACHE[dialect] = _BACKENDS.get(dialect.name, Backend)(dialect)
    return backend


def backend_classes() -> tuple[type[Backend], ...]:
    """Every backend class, once each: what classifies an error that comes without a dialect."""
    return _CLASSES


_CLASSES = tuple(dict.fromkeys(_BACKENDS.values()))
