"""`shaped_values`: a ``VALUES`` list of bind parameters that SQLAlchemy can cache.

SQLAlchemy's ``values()`` is never cached ("multivalues are simply not cacheable"), so
a statement holding one is compiled again at every execution, in time quadratic in its
number of rows. The bulk statements fill their ``VALUES`` lists with bind parameters
only (no literal values), so the list is fully described by its shape: the cache key
here is that shape instead of the rows.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.sql.selectable import Values
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = ["shaped_values"]


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
