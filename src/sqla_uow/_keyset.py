"""Keyset pagination in SQL: the ordering, the "after this position" condition, the page query.

`AsyncRepository.paginate_cursor` validates the call with `KeysetRequest` (shared with
the in-memory fake) and builds its statement here. How a database orders and compares
a column (by its stored text, for some types) is the backend's part
(`Backend.keyset_text`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, or_, select
from sqlalchemy.engine import Dialect

from ._dialects import backend_for
from ._filters import INT64_MAX
from ._model import model_meta
from ._ordering import order_clauses
from ._pagination import keyset_order

__all__ = ["KeysetColumn", "keyset_columns", "keyset_select"]


class KeysetColumn:
    """One column of a keyset ordering, with its direction and NULL handling.

    ``compared`` is what the page is ordered by, the cursor records and the keyset
    condition compares. It is the column itself, except where the database would order
    and compare the column differently from the value SQLAlchemy binds for it (date and
    time columns on SQLite, native enums on MySQL / MariaDB): there it is the column's
    stored text, and the cursor carries that text. So a page never skips or repeats rows.
    """

    __slots__ = ("compared", "descending", "expression", "name", "nullable", "python_type")

    def __init__(
        self,
        name: str,
        expression: ColumnElement[Any],
        *,
        compared: ColumnElement[Any],
        descending: bool,
        nullable: bool,
        python_type: type[Any] | None,
    ) -> None:
        self.name = name
        self.expression = expression
        self.compared = compared
        self.descending = descending
        self.nullable = nullable
        self.python_type = python_type

    @property
    def selected(self) -> ColumnElement[Any]:
        """The column as selected next to the entity (its value goes into cursors)."""
        # Labelled: the ORM would otherwise match a coerced column to the entity's own.
        return self.compared if self.compared is self.expression else self.compared.label(None)

    def reversed(self) -> KeysetColumn:
        """The same column in the opposite direction (for a page before a cursor)."""
        return KeysetColumn(
            self.name,
            self.expression,
            compared=self.compared,
            descending=not self.descending,
            nullable=self.nullable,
            python_type=self.python_type,
        )

    def order_clauses(self) -> list[ColumnElement[Any]]:
        """The ORDER BY clauses of this column."""
        # NULL sorts as the greatest value: last ascending, first descending, as in
        # every ordering of the package (see `order_clauses`).
        return order_clauses(self.compared, descending=self.descending, nullable=self.nullable)

    def equals(self, value: Any) -> ColumnElement[bool]:
        """Rows whose value in this column is *value*."""
        return self.expression.is_(None) if value is None else self.compared == value

    def beyond(self, value: Any) -> ColumnElement[bool] | None:
        """Rows strictly after *value* in this column's direction (None: no such rows)."""
        if not self.descending:
            if value is None:
                return None
            greater: ColumnElement[bool] = self.compared > value
            if self.nullable:
                return or_(greater, self.expression.is_(None))
            return greater
        if value is None:
            return self.expression.is_not(None)
        smaller: ColumnElement[bool] = self.compared < value
        return smaller


def keyset_columns(model: type[Any], order_by: Any, dialect: Dialect) -> dict[str, KeysetColumn]:
    """The `KeysetColumn` of each attribute key of the keyset ordering of *model* on *dialect*.

    Raises:
        InvalidFieldError: An *order_by* a keyset cannot follow (see `keyset_order`).
    """
    meta = model_meta(model)
    backend = backend_for(dialect)
    columns: dict[str, KeysetColumn] = {}
    for name, descending in keyset_order(model, order_by):
        expression: ColumnElement[Any] = getattr(model, name).expression
        text = backend.keyset_text(expression, meta.filterable[name].columns[0].type)
        columns[name] = KeysetColumn(
            name,
            expression,
            compared=expression if text is None else text,
            descending=descending,
            nullable=name in meta.nullable,
            python_type=meta.python_types[name] if text is None else str,
        )
    return columns


def keyset_select(
    model: type[Any],
    keys: Sequence[KeysetColumn],
    criteria: Sequence[ColumnElement[bool]],
    *,
    position: Sequence[Any] | None,
    backwards: bool,
    limit: int,
) -> Select[Any]:
    """The query of one page: *model* and the *keys*' values of the rows after *position*.

    One row more than *limit* is asked for, to tell whether another page follows.
    *backwards* walks the ordering in reverse (a page before a cursor).
    """
    walk = [key.reversed() for key in keys] if backwards else list(keys)
    where = list(criteria)
    if position is not None:
        where.append(_after(walk, position))
    return (
        select(model, *(key.selected for key in keys))
        .where(*where)
        .order_by(*(clause for key in walk for clause in key.order_clauses()))
        .limit(min(limit + 1, INT64_MAX))
    )


def _after(keys: Sequence[KeysetColumn], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after the position *values* in the ordering *keys*."""
    branches: list[ColumnElement[bool]] = []
    for index, key in enumerate(keys):
        step = key.beyond(values[index])
        if step is None:
            continue
        prefix = [keys[j].equals(values[j]) for j in range(index)]
        branches.append(and_(*prefix, step))
    if not branches:
        return false()
    condition = or_(*branches)
    first, first_value = keys[0], values[0]
    if not first.nullable and first_value is not None:
        # A redundant range bound on the leading column lets an index narrow the scan.
        bound = first.compared <= first_value if first.descending else first.compared >= first_value
        condition = and_(bound, condition)
    return condition
