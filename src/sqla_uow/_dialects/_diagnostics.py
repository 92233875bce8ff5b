"""What the backends' error sections share: an error's SQLSTATE, the model's constraints.

A driver error names a constraint (or the columns) it failed on; these helpers find
the columns of a named constraint, or the constraint over given columns, in the
model's table metadata. How a database names a constraint the metadata left unnamed
is the backend's part (`Backend.default_constraint_names`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeGuard

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper
from sqlalchemy.schema import Constraint, Index, PrimaryKeyConstraint, Table, UniqueConstraint

__all__ = [
    "DefaultNames",
    "constraint_columns",
    "mapper_or_none",
    "named_constraint",
    "sqlstate",
]

DefaultNames = Callable[[str, tuple[str, ...], bool], tuple[str, ...]]
"""(table name, column names, primary key) -> the names a database gives such an
unnamed constraint."""


def sqlstate(err: BaseException) -> str | None:
    """The five-character SQLSTATE *err* carries, if any (the standard SQL error code)."""
    for attr in ("sqlstate", "pgcode"):
        value = getattr(err, attr, None)
        if isinstance(value, str) and len(value) == 5:
            return value
    return None


def _is_mapper(value: object) -> TypeGuard[Mapper[Any]]:
    return isinstance(value, Mapper)


def mapper_or_none(model: type[Any] | None) -> Mapper[Any] | None:
    """The mapper of *model*, or ``None`` (no model, or not a mapped class)."""
    found: object = sa_inspect(model, raiseerr=False) if model is not None else None
    return found if _is_mapper(found) else None


def _schema_items(model: type[Any] | None) -> Iterator[tuple[str | None, tuple[str, ...], bool]]:
    """(name, column names, unique) of each constraint and index of *model*'s tables."""
    mapper = mapper_or_none(model)
    if mapper is None:
        return
    for table in mapper.tables:
        if not isinstance(table, Table):
            continue
        items: list[Constraint | Index] = [*table.constraints, *table.indexes]
        for item in items:
            name = item.name
            columns = tuple(col.name for col in getattr(item, "columns", ()))
            if isinstance(item, Index):
                unique = bool(item.unique)
            else:
                unique = isinstance(item, (UniqueConstraint, PrimaryKeyConstraint))
            yield (name if isinstance(name, str) else None), columns, unique


def constraint_columns(
    model: type[Any] | None, constraint: str | None, default_names: DefaultNames
) -> tuple[str, ...]:
    """Columns of the constraint or index named *constraint* on *model*'s tables.

    Named constraints and indexes are found in the metadata; an unnamed primary key or
    unique one by the name the database gave it (*default_names*).
    """
    if constraint is None:
        return ()
    unnamed: list[tuple[str, ...]] = []
    for name, columns, unique in _schema_items(model):
        if name == constraint:
            return columns
        if name is None and unique and columns:
            unnamed.append(columns)
    mapper = mapper_or_none(model)
    if mapper is None:
        return ()
    for table in mapper.tables:
        table_name = str(getattr(table, "name", ""))
        pk_columns = tuple(col.name for col in getattr(table, "primary_key", ()))
        if pk_columns and constraint in default_names(table_name, pk_columns, True):
            return pk_columns
        for columns in unnamed:
            if constraint in default_names(table_name, columns, False):
                return columns
    return ()


def named_constraint(model: type[Any] | None, columns: tuple[str, ...]) -> str | None:
    """The name of *model*'s unique constraint or unique index over exactly *columns*."""
    wanted = set(columns)
    for name, item_columns, unique in _schema_items(model):
        if name and unique and wanted and set(item_columns) == wanted:
            return name
    return None
