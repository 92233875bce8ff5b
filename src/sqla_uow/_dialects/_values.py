"""Rows as driver values (`bind_values`), and `shaped_values`: a ``VALUES`` list of bind
parameters that SQLAlchemy can cache.

SQLAlchemy's ``values()`` is never cached ("multivalues are simply not cacheable"), so
a statement holding one is compiled again at every execution, in time quadratic in its
number of rows. The bulk statements fill their ``VALUES`` lists with bind parameters
only (no literal values), so the list is fully described by its shape: the cache key
here is that shape instead of the rows.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.schema import Column
from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.sql.selectable import Values
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = ["bind_values", "shaped_values"]


class _ShapedValues(Values):
    """`Values` whose rows are bind parameters; cached by ``_shape``."""

    _shape: Hashable = None
    _cache_key_traversal = [  # noqa: RUF012 - SQLAlchemy's class attribute
        *((name, kind) for name, kind in Values._traverse_internals if name != "_data"),
        ("_shape", InternalTraversal.dp_plain_obj),
    ]


def shaped_values(
    columns: Sequence[ColumnClause[Any]],
    rows: list[tuple[Any, ...]],
    *,
    shape: Hashable,
    name: str | None = None,
) -> Values:
    """``VALUES`` of *rows* (bind parameters without values, or literal SQL) as *columns*.

    *shape* must tell apart every two lists whose SQL differs (the number of rows, the
    casts of the first row, ...): it stands for the rows in SQLAlchemy's cache key.
    """
    result = _ShapedValues(*columns, name=name).data(rows)
    result._shape = shape
    return result


def bind_values(
    dialect: Dialect,
    columns: Sequence[Column[Any]],
    names: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
) -> list[tuple[Any, ...]]:
    """The values of *names* of each row, as tuples, through the columns' bind processing."""
    get = itemgetter(*names)
    value_rows = [get(row) for row in rows] if len(names) > 1 else [(get(row),) for row in rows]
    processors = [col.type.dialect_impl(dialect).bind_processor(dialect) for col in columns]
    if all(proc is None for proc in processors):
        return value_rows
    return [
        tuple(
            [
                proc(value) if proc is not None and value is not None else value
                for value, proc in zip(row, processors, strict=True)
            ]
        )
        for row in value_rows
    ]
