"""Keyword filters: the ``field__lookup=value`` lookups and `compile_where`.

Every name a caller passes (a filter such as ``email__ilike``) is checked against the
model's mapped column attributes before any SQL is built. Names never reach SQL text:
they select a mapped attribute, and values are always bound parameters, checked
against the column's type first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, TypeGuard, cast, runtime_checkable

from sqlalchemy import ColumnElement
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import operators

from ._dialects import backend_for
from ._filters import check_value, choices_text, column_expression, unknown_field_error
from ._model import model_meta, value_rule
from ._values import ValueMismatch, check_text, describe
from .exceptions import InvalidFieldError

__all__ = ["LOOKUPS", "SupportsWhere", "Where", "compile_where"]


def _is_column_element(value: object) -> TypeGuard[ColumnElement[Any]]:
    # Spells out the type argument ``isinstance`` would leave unknown to pyright.
    return isinstance(value, ColumnElement)


@dataclasses.dataclass(frozen=True)
class _Lookup:
    """One ``field__lookup=value`` filter being compiled."""

    model: type[Any]
    name: str
    """The filter as the caller wrote it (``"id__gt"``)."""
    key: str
    """The attribute key it filters on."""
    column: ColumnElement[Any]
    dialect: Dialect | None

    def value(self, value: Any) -> Any:
        return check_value(
            self.model,
            self.key,
            value,
            dialect=self.dialect,
            label=f"filter {self.name!r}",
            field=self.name,
        )

    def error(self, message: str) -> InvalidFieldError:
        return InvalidFieldError(
            f"filter {self.name!r} on {self.model.__name__} {message}",
            model=self.model,
            field=self.name,
        )


def _lookup_eq(lookup: _Lookup, value: Any) -> Any:
    col = lookup.column
    return col.is_(None) if value is None else col == lookup.value(value)


def _lookup_ne(lookup: _Lookup, value: Any) -> Any:
    col = lookup.column
    return col.is_not(None) if value is None else col != lookup.value(value)


def _lookup_in(lookup: _Lookup, value: Any) -> Any:
    # isinstance() on an object alias: the Any value keeps no unknown type arguments.
    checked: object = value
    if isinstance(checked, (str, bytes, bytearray, Mapping)) or not isinstance(checked, Iterable):
        raise lookup.error(f"needs a list, tuple or set of values, got {type(value).__name__}")
    items: Iterable[Any] = value
    values = [item if item is None else lookup.value(item) for item in items]
    if lookup.dialect is None:
        return lookup.column.in_(values)
    # Any number of values: one array on PostgreSQL, one JSON document for a long list
    # on SQLite (see the backends' ``in_list``).
    return backend_for(lookup.dialect).in_list(lookup.column, values)


def _comparison(op: Callable[[Any, Any], Any]) -> Callable[[_Lookup, Any], Any]:
    def lookup(lookup: _Lookup, value: Any) -> Any:
        if value is None:
            raise lookup.error("got None; use field=None or field__is_null=True to match NULL")
        return op(lookup.column, lookup.value(value))

    return lookup


def _lookup_not_in(lookup: _Lookup, value: Any) -> Any:
    return ~_lookup_in(lookup, value)


def _lookup_between(lookup: _Lookup, value: Any) -> Any:
    checked: object = value
    bounds = (
        list(cast("Iterable[object]", checked))
        if isinstance(checked, (list, tuple)) and len(cast("Sequence[object]", checked)) == 2
        else None
    )
    if bounds is None or any(bound is None for bound in bounds):
        raise lookup.error(f"needs a (low, high) pair of values, got {value!r}")
    return lookup.column.between(lookup.value(bounds[0]), lookup.value(bounds[1]))


def _text_value(lookup: _Lookup, value: Any) -> str:
    """*value* as the text a pattern lookup matches; the column must hold text."""
    rule = value_rule(lookup.model, lookup.key, lookup.dialect)
    if not rule.is_text:
        raise lookup.error(
            f"got {describe(value)}; a pattern needs a text column, and {lookup.key!r} "
            "is not a text column"
        )
    try:
        return check_text(value, "a string pattern")
    except ValueMismatch as exc:
        raise lookup.error(f"got {describe(value)}; expected {exc.expected}") from None


def _pattern(method: str) -> Callable[[_Lookup, Any], Any]:
    """A LIKE lookup: ``%`` and ``_`` in the value are wildcards."""

    def pattern(lookup: _Lookup, value: Any) -> Any:
        return getattr(lookup.column, method)(_text_value(lookup, value))

    return pattern


def _escaped_pattern(method: str) -> Callable[[_Lookup, Any], Any]:
    """A substring lookup whose value is literal text: ``%``, ``_`` and ``/`` are escaped."""

    def pattern(lookup: _Lookup, value: Any) -> Any:
        return getattr(lookup.column, method)(_text_value(lookup, value), autoescape=True)

    return pattern


def _lookup_is_null(lookup: _Lookup, value: Any) -> Any:
    if not isinstance(value, bool):
        raise lookup.error(f"needs True or False, got {type(value).__name__}")
    col = lookup.column
    return col.is_(None) if value else col.is_not(None)


_LOOKUP_FUNCTIONS: dict[str, Callable[[_Lookup, Any], Any]] = {
    "eq": _lookup_eq,
    "ne": _lookup_ne,
    "in": _lookup_in,
    "gt": _comparison(operators.gt),
    "gte": _comparison(operators.ge),
    "lt": _comparison(operators.lt),
    "lte": _comparison(operators.le),
    "like": _pattern("like"),
    "ilike": _pattern("ilike"),
    "is_null": _lookup_is_null,
    "not_in": _lookup_not_in,
    "between": _lookup_between,
    "startswith": _escaped_pattern("startswith"),
    "istartswith": _escaped_pattern("istartswith"),
    "endswith": _escaped_pattern("endswith"),
    "contains": _escaped_pattern("contains"),
    "icontains": _escaped_pattern("icontains"),
}
LOOKUPS: tuple[str, ...] = tuple(sorted(_LOOKUP_FUNCTIONS))
"""The lookup suffixes ``compile_where`` accepts after ``field__``."""


@runtime_checkable
class SupportsWhere(Protocol):
    """An object that stands for a WHERE condition, such as a `FilterSet` instance."""

    def __clause_element__(self) -> ColumnElement[bool]:
        """The condition as a SQL boolean expression."""
        ...


Where: TypeAlias = "ColumnElement[bool] | SupportsWhere"
"""What the repositories' ``*where`` arguments take: a SQL boolean expression or a FilterSet."""


def compile_where(
    model: type[Any],
    where: Sequence[Where],
    filters: Mapping[str, Any],
    *,
    dialect: Dialect | None = None,
) -> list[ColumnElement[bool]]:
    """Combine SQL expressions and keyword filters into a list of WHERE criteria.

    ``field=value`` compares for equality (``field=None`` means ``IS NULL``);
    ``field__<lookup>=value`` applies a lookup: ``eq``, ``ne``, ``in``, ``not_in``, ``gt``,
    ``gte``, ``lt``, ``lte``, ``between`` (a ``(low, high)`` pair, inclusive), ``like``,
    ``ilike``, ``startswith``, ``istartswith``, ``endswith``, ``contains``, ``icontains``
    (literal text: ``%`` and ``_`` in the value match only themselves), ``is_null``.
    Comparisons follow SQL: a row whose column is NULL matches neither ``field__ne=x``
    nor ``field__gt=x`` nor ``field__not_in=[x]``.

    Every value is checked against the column's type on *dialect* before any SQL
    (``None``: no database, as in the fakes) and converted where that is exact, such as
    ``"42"`` for an integer column; see `check_value`.

    Raises:
        InvalidFieldError: An unknown field or lookup, or a value of the wrong kind
            (``__in`` needs a non-string iterable, ``__is_null`` a bool, ``__like`` a str
            and a text column, comparisons a non-None value, every value one its
            column's type takes).

    Example:
        ```python
        criteria = compile_where(User, [User.id > 10], {"email__ilike": "%@example.com"})
        stmt = select(User).where(*criteria)
        ```
    """
    meta = model_meta(model)
    columns = meta.filterable
    criteria: list[ColumnElement[bool]] = []
    for expression in where:
        # Checked at run time: callers without a type checker may pass anything.
        candidate: object = expression
        if not _is_column_element(candidate) and isinstance(candidate, SupportsWhere):
            candidate = candidate.__clause_element__()  # a FilterSet
        if not _is_column_element(candidate):
            raise InvalidFieldError(
                f"positional filters on {model.__name__} must be SQL expressions "
                f"such as User.id > 3, got {type(candidate).__name__}",
                model=model,
            )
        criteria.append(candidate)
    for name, value in filters.items():
        if name in columns:
            key, lookup = name, "eq"
        else:
            key, sep, lookup = name.rpartition("__")
            if not sep or key not in columns:
                raise unknown_field_error(model, key if sep and key else name, columns)
            if lookup not in _LOOKUP_FUNCTIONS:
                raise InvalidFieldError(
                    f"unknown lookup {lookup!r} in {name!r} on {model.__name__}; "
                    f"lookups: {choices_text(LOOKUPS)}",
                    model=model,
                    field=name,
                    choices=LOOKUPS,
                )
        compiled = _Lookup(model, name, key, column_expression(model, key), dialect)
        criteria.append(_LOOKUP_FUNCTIONS[lookup](compiled, value))
    return criteria
