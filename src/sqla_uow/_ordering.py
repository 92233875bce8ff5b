"""``order_by`` parsing: field names and column expressions to ORDER BY clauses.

Names are checked against the model's mapped column attributes; NULL sorts as the
greatest value on every database (see `order_clauses`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

from sqlalchemy import ColumnElement
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from ._dialects import NullFlag
from ._filters import choices_text, column_expression
from ._model import mapped_key, model_meta
from .exceptions import InvalidFieldError

__all__ = [
    "compile_order_by",
    "order_clauses",
    "order_items",
    "parse_order_item",
]


# ``isinstance`` against a generic class leaves the type arguments unknown to pyright
# (mypy fills in ``Any``); these guards narrow to the ``Any``-parametrised type for both.


def _is_column_element(value: object) -> TypeGuard[ColumnElement[Any]]:
    return isinstance(value, ColumnElement)


def _is_queryable_attribute(value: object) -> TypeGuard[QueryableAttribute[Any]]:
    return isinstance(value, QueryableAttribute)


def _is_unary_expression(value: object) -> TypeGuard[UnaryExpression[Any]]:
    return isinstance(value, UnaryExpression)


def _is_iterable(value: object) -> TypeGuard[Iterable[Any]]:
    return isinstance(value, Iterable)


def parse_order_item(model: type[Any], item: Any) -> tuple[ColumnElement[Any], bool, str | None]:
    """Split one ``order_by`` item into (expression, descending, attribute key or None).

    The key is set when the item names a mapped column attribute of *model* (a string,
    the attribute itself, or ``asc()``/``desc()`` of it).
    """
    if isinstance(item, str):
        name = item
        descending = False
        if name and name[0] in "+-":
            descending = name[0] == "-"
            name = name[1:]
        columns = model_meta(model).filterable
        if name not in columns:
            choices = sorted(columns)
            raise InvalidFieldError(
                f"unknown order key {item!r} on {model.__name__}; "
                f"use a field name, optionally prefixed with '-': {choices_text(choices)}",
                model=model,
                field=item,
                choices=choices,
            )
        return column_expression(model, name), descending, name
    descending = False
    inner: object = item
    if _is_unary_expression(inner) and inner.modifier in (
        operators.desc_op,
        operators.asc_op,
    ):
        descending = inner.modifier is operators.desc_op
        inner = inner.element
    if _is_queryable_attribute(inner):
        key = mapped_key(model, inner)
        return inner.expression, descending, key
    if _is_column_element(inner):
        return inner, descending, mapped_key(model, inner)
    raise InvalidFieldError(
        f"order_by on {model.__name__} takes field names ('name', '-created_at') or column "
        f"expressions, got {type(item).__name__}",
        model=model,
        field=repr(item),
        choices=sorted(model_meta(model).filterable),
    )


def order_items(model: type[Any], order_by: Any) -> list[Any]:
    """The items of an ``order_by`` argument: one item, or the items of a sequence.

    Raises:
        InvalidFieldError: *order_by* is a mapping, a set or bytes (an unordered or
            ambiguous collection whose items would silently not mean an ordering).
    """
    if order_by is None:
        return []
    if isinstance(order_by, (str, ColumnElement, QueryableAttribute)):
        return [order_by]
    checked: object = order_by
    if isinstance(checked, (Mapping, set, frozenset, bytes, bytearray, memoryview)):
        raise InvalidFieldError(
            f"order_by on {model.__name__} takes a field name ('name', '-created_at'), a "
            f"column expression, or a list or tuple of these; got a {type(order_by).__name__}",
            model=model,
            field="order_by",
            choices=sorted(model_meta(model).filterable),
        )
    if _is_iterable(order_by):
        return list(order_by)
    return [order_by]


def order_clauses(
    expression: ColumnElement[Any], *, descending: bool, nullable: bool
) -> list[ColumnElement[Any]]:
    """The ORDER BY clauses for one column: NULL last ascending, first descending.

    A column that cannot be NULL gets the plain ascending column or its ``DESC``; a
    nullable one is preceded by a NULL flag (see `NullFlag`).
    """
    ordering = expression.desc() if descending else expression
    if not nullable:
        # Ascending is the default: a bare column keeps the statement (and the key
        # SQLAlchemy caches its compiled form under) as small as a hand-written one.
        return [ordering]
    flag = NullFlag(expression)
    return [flag.desc() if descending else flag.asc(), ordering]


def compile_order_by(model: type[Any], order_by: Any) -> list[ColumnElement[Any]]:
    """Turn ``order_by`` into ORDER BY expressions.

    Accepts ``None``, a field name (``"name"``; ``"-created_at"`` for descending), a
    column expression (``User.name``, ``User.name.desc()``), or a list or tuple of these.

    NULL sorts as the greatest value, on every database: NULLs come last in an ascending
    ordering and first in a descending one (PostgreSQL's default; on SQLite, MySQL and
    MariaDB a leading ``IS NULL`` sort key makes it so). This applies to the model's columns named
    by string, attribute or their ``asc()`` / ``desc()``; other expressions (such as
    ``func.lower(User.name)`` or ``User.name.nulls_first()``) are used as given.

    Raises:
        InvalidFieldError: An unknown field name, an item of another type, or an
            ``order_by`` that is a mapping, set or bytes.

    Example:
        ```python
        stmt = select(User).order_by(*compile_order_by(User, ["-created_at", "id"]))
        ```
    """
    clauses: list[ColumnElement[Any]] = []
    nullable = model_meta(model).nullable
    for item in order_items(model, order_by):
        expression, descending, key = parse_order_item(model, item)
        if key is not None:
            clauses.extend(
                order_clauses(expression, descending=descending, nullable=key in nullable)
            )
        elif _is_queryable_attribute(item):
            clauses.append(item.expression)
        else:
            clauses.append(item)
    return clauses
