"""Keyword lookups, ``order_by`` parsing and value extraction, validated against the mapper.

Every name a caller passes (a filter such as ``email__ilike``, an ordering such as
``"-created_at"``, a field to assign) is checked against the model's mapped column
attributes before any SQL is built. Names never reach SQL text: they select a mapped
attribute, and values are always bound parameters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol, TypeAlias, TypeGuard, TypeVar, cast, runtime_checkable

from sqlalchemy import ColumnElement, String, any_, bindparam, func, inspect, select
from sqlalchemy import column as sql_column
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.schema import Column
from sqlalchemy.sql import ClauseElement, operators
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.sqltypes import NULLTYPE
from sqlalchemy.sql.visitors import InternalTraversal

from ._model import mapped_key, model_meta, value_rule
from ._values import ValueMismatch, check_text, describe
from .exceptions import InvalidFieldError, MultipleResultsError, NotFoundError

_T = TypeVar("_T")

INT64_MAX = 2**63 - 1
"""The largest integer a limit, offset or cursor value may be (a signed 64-bit integer)."""
INT32_MAX = 2**31 - 1
"""The largest ``chunk_size`` of a stream (drivers fetch with a C ``int`` row count)."""

__all__ = [
    "INT64_MAX",
    "LOOKUPS",
    "SupportsWhere",
    "Where",
    "as_values",
    "check_assignable",
    "check_page_size",
    "check_stream_chunk_size",
    "check_value",
    "check_window",
    "check_write_values",
    "compile_order_by",
    "compile_where",
    "drop_unchanged_key",
    "identity_of",
    "is_own_instance",
    "order_clauses",
    "order_items",
]


# ``isinstance`` against a generic class leaves the type arguments unknown to pyright
# (mypy fills in ``Any``); these guards narrow to the ``Any``-parametrised type for both.


def _is_column_element(value: object) -> TypeGuard[ColumnElement[Any]]:
    return isinstance(value, ColumnElement)


def _is_queryable_attribute(value: object) -> TypeGuard[QueryableAttribute[Any]]:
    return isinstance(value, QueryableAttribute)


def _is_unary_expression(value: object) -> TypeGuard[UnaryExpression[Any]]:
    return isinstance(value, UnaryExpression)


def _is_instance_state(value: object) -> TypeGuard[InstanceState[Any]]:
    return isinstance(value, InstanceState)


def _is_mapping(value: object) -> TypeGuard[Mapping[Any, Any]]:
    return isinstance(value, Mapping)


def _is_iterable(value: object) -> TypeGuard[Iterable[Any]]:
    return isinstance(value, Iterable)


def check_write_values(
    model: type[Any], values: dict[str, Any], *, dialect: Dialect | None, row: int | None = None
) -> dict[str, Any]:
    """*values* (writable column keys) checked as values to store; converted in a copy.

    ``None`` and SQL expressions are left to the database. A value must be one its
    column's type takes (as for filters) and fit the column's declared length and
    precision. The returned dict is *values* itself when nothing was converted.

    Raises:
        InvalidFieldError: A value the column cannot store (*row* numbers the row of a
            bulk call in the message); nothing was sent.
    """
    result = values
    for key, value in values.items():
        if value is None or isinstance(value, ClauseElement):
            continue
        try:
            checked = value_rule(model, key, dialect, write=True).check(value)
        except ValueMismatch as exc:
            where = f"row {row} of {model.__name__}: " if row is not None else ""
            raise InvalidFieldError(
                f"{where}field {key!r} of {model.__name__} got {describe(value)}; "
                f"expected {exc.expected}",
                model=model,
                field=key,
            ) from None
        if checked is not value:
            if result is values:
                result = dict(values)
            result[key] = checked
    return result


def check_value(
    model: type[Any], key: str, value: Any, *, dialect: Dialect | None, label: str, field: str
) -> Any:
    """*value* checked against the type of *model*'s column *key*: the value to bind.

    Exact conversions are applied (``"42"`` for an integer column, a UUID's string form,
    an ISO date); see `sqla_uow._values` for the rules.

    Raises:
        InvalidFieldError: The value does not fit the column; the message names
            *label*, the value and what the column takes.
    """
    try:
        return value_rule(model, key, dialect).check(value)
    except ValueMismatch as exc:
        raise InvalidFieldError(
            f"{label} on {model.__name__} got {describe(value)}; expected {exc.expected}",
            model=model,
            field=field,
        ) from None


def _choices(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def _unknown_field(model: type[Any], name: str, fields: Iterable[str]) -> InvalidFieldError:
    choices = sorted(fields)
    return InvalidFieldError(
        f"unknown field {name!r} on {model.__name__}; fields: {_choices(choices)}",
        model=model,
        field=name,
        choices=choices,
    )


def _attribute(model: type[Any], key: str) -> ColumnElement[Any]:
    attr: QueryableAttribute[Any] = getattr(model, key)
    return attr.expression


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


IN_LIST_INLINE = 500
"""``__in`` lists up to this long are sent as one parameter per value on SQLite (and
always on MySQL / MariaDB, whose drivers inline the values); longer ones on SQLite as one
JSON parameter. PostgreSQL always gets one array parameter."""


def _lookup_in(lookup: _Lookup, value: Any) -> Any:
    # isinstance() on an object alias: the Any value keeps no unknown type arguments.
    checked: object = value
    if isinstance(checked, (str, bytes, bytearray, Mapping)) or not isinstance(checked, Iterable):
        raise lookup.error(f"needs a list, tuple or set of values, got {type(value).__name__}")
    items: Iterable[Any] = value
    values = [item if item is None else lookup.value(item) for item in items]
    return in_list(lookup.column, values, lookup.dialect)


def _one_number_type(values: list[Any]) -> list[Any]:
    """*values* with mixed ``int`` / ``float`` / ``Decimal`` made one type, for an array.

    A driver sends a list as an array of one element type: psycopg refuses a list that
    mixes numbers of different Python types (asyncpg converts each element), so
    ``[Decimal("9.99"), 1]`` and ``[0.5, 2]`` become lists of ``Decimal`` (exact, and
    cast to the column's type by the statement). Other lists are returned as they are.
    """
    kinds: set[type] = {type(value) for value in values}
    if len(kinds) < 2 or not kinds <= {int, float, Decimal}:
        return values
    return [value if isinstance(value, Decimal) else Decimal(str(value)) for value in values]


def in_list(column: ColumnElement[Any], values: list[Any], dialect: Dialect | None) -> Any:
    """``column IN values`` in the form that takes any number of values on *dialect*.

    PostgreSQL: ``column = ANY(:array)``, one parameter whatever the length (the
    statement stays cacheable). SQLite: a long list becomes one JSON parameter read by
    ``json_each``, past the limit of 32,766 parameters a statement may carry. Other
    databases, and values a JSON document cannot carry: ``IN (...)``.
    """
    name = dialect.name if dialect is not None else None
    if name == "postgresql" and values and None not in values:
        array = bindparam(None, _one_number_type(values), type_=ARRAY(column.type), unique=True)
        return column == any_(array)
    if name == "sqlite" and dialect is not None and len(values) > IN_LIST_INLINE:
        processor = column.type.dialect_impl(dialect).bind_processor(dialect)
        processed = [processor(v) for v in values] if processor is not None else values
        with contextlib.suppress(TypeError, ValueError):
            payload = json.dumps(processed)
            value_column: ColumnElement[Any] = sql_column("value")
            source = select(value_column).select_from(
                func.json_each(bindparam(None, payload, type_=String(), unique=True))
            )
            return column.in_(source.scalar_subquery())
    return column.in_(values)


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
                raise _unknown_field(model, key if sep and key else name, columns)
            if lookup not in _LOOKUP_FUNCTIONS:
                raise InvalidFieldError(
                    f"unknown lookup {lookup!r} in {name!r} on {model.__name__}; "
                    f"lookups: {_choices(LOOKUPS)}",
                    model=model,
                    field=name,
                    choices=LOOKUPS,
                )
        compiled = _Lookup(model, name, key, _attribute(model, key), dialect)
        criteria.append(_LOOKUP_FUNCTIONS[lookup](compiled, value))
    return criteria


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
                f"use a field name, optionally prefixed with '-': {_choices(choices)}",
                model=model,
                field=item,
                choices=choices,
            )
        return _attribute(model, name), descending, name
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


class _NullFlag(ColumnElement[Any]):
    """The leading sort key that makes NULL sort as the greatest value.

    ``expression IS NULL`` (false before true) on SQLite, MySQL, MariaDB and other
    databases that sort NULL as the smallest value. PostgreSQL (and Oracle) sort NULL
    as the greatest value already: there it is the expression itself, a sort key the
    planner drops as redundant, so an index on the column still serves the ordering.

    It is ordered with ``asc()`` / ``desc()`` like any column, so SQLAlchemy can move
    it into a subquery's columns (as it does for joined eager loading with a limit).
    """

    __visit_name__ = "sqla_uow_null_flag"
    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy's declared traversal
        ("element", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, element: ColumnElement[Any]) -> None:
        self.element = element
        self.type = NULLTYPE  # never read back: no result processing


def _compile_null_flag(element: _NullFlag, compiler: Any, **kw: Any) -> str:
    rendered: str = compiler.process(element.element.is_(None), **kw)
    return rendered


def _compile_null_flag_native(element: _NullFlag, compiler: Any, **kw: Any) -> str:
    rendered: str = compiler.process(element.element, **kw)
    return rendered


compiles(_NullFlag)(_compile_null_flag)
compiles(_NullFlag, "postgresql")(_compile_null_flag_native)
compiles(_NullFlag, "oracle")(_compile_null_flag_native)


def order_clauses(
    expression: ColumnElement[Any], *, descending: bool, nullable: bool
) -> list[ColumnElement[Any]]:
    """The ORDER BY clauses for one column: NULL last ascending, first descending.

    A column that cannot be NULL gets the plain ascending column or its ``DESC``; a
    nullable one is preceded by a NULL flag (see `_NullFlag`).
    """
    ordering = expression.desc() if descending else expression
    if not nullable:
        # Ascending is the default: a bare column keeps the statement (and the key
        # SQLAlchemy caches its compiled form under) as small as a hand-written one.
        return [ordering]
    flag = _NullFlag(expression)
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


def check_assignable(
    model: type[Any],
    values: Mapping[str, Any],
    *,
    allow_primary_key: bool = True,
) -> None:
    """Check that every key of *values* is a writable mapped column of *model*.

    Raises:
        InvalidFieldError: A key names a relationship, a property, a SQL-expression
            column or nothing at all (or a primary-key column when
            ``allow_primary_key=False``); the message lists the writable fields.

    Example:
        ```python
        check_assignable(User, {"email": "a@example.com"})  # passes
        check_assignable(User, {"orders": []})  # InvalidFieldError
        ```
    """
    meta = model_meta(model)
    columns = meta.writable
    if not allow_primary_key:
        pk_names = meta.pk
    elif meta.writable_keys.issuperset(values):
        return  # the common case: every key is a writable column
    else:
        pk_names = ()
    mapper = meta.mapper
    # Keys are checked at run time: callers without a type checker may pass any key.
    names = cast("Iterable[object]", values)
    for name in names:
        if not isinstance(name, str):
            raise InvalidFieldError(
                f"field names must be strings, got {name!r} for {model.__name__}",
                model=model,
                field=repr(name),
                choices=sorted(columns),
            )
        if name in pk_names:
            choices = sorted(set(columns) - set(pk_names))
            raise InvalidFieldError(
                f"primary key {name!r} of {model.__name__} cannot be changed; "
                f"fields: {_choices(choices)}",
                model=model,
                field=name,
                choices=choices,
            )
        if name in columns:
            continue
        if name in mapper.relationships:
            kind = "a relationship"
        elif name in mapper.all_orm_descriptors or name in mapper.attrs:
            kind = "not a writable column"
        elif hasattr(model, name):
            kind = "not a mapped column"
        else:
            raise _unknown_field(model, name, columns)
        raise InvalidFieldError(
            f"field {name!r} on {model.__name__} is {kind}; assignable fields: {_choices(columns)}",
            model=model,
            field=name,
            choices=sorted(columns),
        )


def as_values(
    data: Any,
    values: Mapping[str, Any],
    *,
    exclude_unset: bool = False,
) -> dict[str, Any]:
    """Merge *data* and keyword *values* into one dict of field values.

    *data* may be ``None``, a mapping, a pydantic model (anything with a
    ``model_dump()`` method; ``exclude_unset=True`` passes that on, for partial
    updates), a dataclass instance, or a mapped instance (its loaded column
    attributes). Keyword *values* override keys of *data*. Keys are not validated
    here: pass the result to `check_assignable`.

    Raises:
        TypeError: *data* is of another kind.

    Example:
        ```python
        as_values(UserIn(email="a@example.com"), {"name": "A"})
        # {"email": "a@example.com", "name": "A"}
        ```
    """
    result: dict[str, Any]
    if data is None:
        result = {}
    elif _is_mapping(data):
        result = dict(data)
    elif callable(getattr(data, "model_dump", None)) and not isinstance(data, type):
        dumped = data.model_dump(exclude_unset=True) if exclude_unset else data.model_dump()
        if not _is_mapping(dumped):
            raise TypeError(f"{type(data).__name__}.model_dump() did not return a mapping")
        result = dict(dumped)
    elif dataclasses.is_dataclass(data) and not isinstance(data, type):
        result = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    elif _is_instance_state(state := inspect(data, raiseerr=False)):
        loaded = state.dict
        result = {
            prop.key: loaded[prop.key]
            for prop in state.mapper.column_attrs
            if prop.key in loaded and all(isinstance(col, Column) for col in prop.columns)
        }
    else:
        raise TypeError(
            "data must be a mapping, a pydantic model, a dataclass instance or a mapped "
            f"instance, got {type(cast(object, data)).__name__}"
        )
    result.update(values)
    return result


def check_window(model: type[Any], *, limit: int | None, offset: int | None) -> None:
    """Check that *limit* and *offset* are non-negative integers (or ``None``).

    Raises:
        InvalidFieldError: A negative value, a value above `INT64_MAX` (no database
            takes it), or a value that is not an ``int``.
    """
    # Values are checked at run time: callers without a type checker may pass anything.
    window = cast("tuple[tuple[str, object], ...]", (("limit", limit), ("offset", offset)))
    for name, value in window:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidFieldError(
                f"{name} must be an int, got {type(value).__name__}",
                model=model,
                field=name,
            )
        if value < 0:
            raise InvalidFieldError(
                f"{name} must be zero or more, got {value}", model=model, field=name
            )
        if value > INT64_MAX:
            raise InvalidFieldError(
                f"{name} must be at most {INT64_MAX} (a 64-bit integer), got {value}",
                model=model,
                field=name,
            )


def check_page_size(model: type[Any], limit: int) -> None:
    """Check the ``limit`` of a page: an ``int`` from 1 to `INT64_MAX`.

    Raises:
        InvalidFieldError: Another type, or a value out of that range.
    """
    check_window(model, limit=limit, offset=None)
    if limit < 1:
        raise InvalidFieldError(
            f"limit must be at least 1, got {limit}", model=model, field="limit"
        )


def check_stream_chunk_size(model: type[Any], chunk_size: int) -> None:
    """Check the ``chunk_size`` of ``stream`` / ``stream_chunks``: an ``int`` from 1 to `INT32_MAX`.

    Drivers fetch a chunk with a C ``int`` row count, so a larger one cannot be asked for.

    Raises:
        InvalidFieldError: Another type, or a value out of that range.
    """
    # Checked at run time: callers without a type checker may pass anything.
    size: Any = chunk_size
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= INT32_MAX:
        raise InvalidFieldError(
            f"chunk_size must be an int from 1 to {INT32_MAX}, got {chunk_size!r}",
            model=model,
            field="chunk_size",
        )


def not_found_error(model: type[Any], ident: Any) -> NotFoundError:
    """The error for a primary key *ident* that matches nothing."""
    return NotFoundError(
        f"{model.__name__} with primary key {ident!r} not found", model=model, ident=ident
    )


def one_or_none(model: type[Any], found: Sequence[_T]) -> _T | None:
    """The only item of *found* (at most two matches), or ``None`` when it is empty.

    Raises:
        MultipleResultsError: *found* holds more than one item.
    """
    if len(found) > 1:
        raise MultipleResultsError(
            f"find_one on {model.__name__} matched more than one row", model=model
        )
    return found[0] if found else None


def identity_of(model: type[Any], pk: Any, *, dialect: Dialect | None = None) -> tuple[Any, ...]:
    """Normalise a primary key (a value, a tuple or a mapping by key) to an identity tuple.

    Each value is checked against its column's type on *dialect* (see `check_value`)
    and converted where that is exact: ``"1"`` for an integer key is ``1``, a UUID's
    string form is the ``uuid.UUID``, so a key finds the identity its row comes back with.

    Raises:
        InvalidFieldError: *pk* does not fit the primary key (wrong keys or number of
            values, a ``None``, or a value its column's type does not take).
        TypeError: *pk* holds a mapped instance instead of key values.
    """
    names = model_meta(model).pk
    values: tuple[Any, ...]
    # isinstance() on an object alias: the Any value keeps no unknown type arguments.
    checked: object = pk
    if isinstance(checked, Mapping):
        given = cast("Mapping[Any, Any]", pk)
        keys = set(given)
        if keys != set(names):
            raise InvalidFieldError(
                f"primary key of {model.__name__} needs the keys {', '.join(names)}; "
                f"got {', '.join(sorted(map(str, keys))) or 'none'}",
                model=model,
                field="pk",
                choices=names,
            )
        values = tuple(given[name] for name in names)
    elif isinstance(checked, (tuple, list)):
        values = tuple(cast("Sequence[Any]", pk))
    elif len(names) == 1:
        values = (pk,)
    else:
        raise InvalidFieldError(
            f"{model.__name__} has a composite primary key ({', '.join(names)}); "
            f"pass a tuple or a mapping, got {pk!r}",
            model=model,
            field="pk",
            choices=names,
        )
    if len(values) != len(names):
        raise InvalidFieldError(
            f"primary key of {model.__name__} has {len(names)} column(s) "
            f"({', '.join(names)}), got {len(values)} value(s): {pk!r}",
            model=model,
            field="pk",
            choices=names,
        )
    converted: list[Any] = []
    for name, value in zip(names, values, strict=True):
        if value is None:
            raise InvalidFieldError(
                f"primary key of {model.__name__} cannot contain None: {pk!r}",
                model=model,
                field="pk",
                choices=names,
            )
        if not isinstance(value, _PLAIN_KEY_TYPES) and _is_instance_state(
            inspect(value, raiseerr=False)
        ):
            raise TypeError(f"expected a {model.__name__} or its primary key, got {value!r}")
        converted.append(
            check_value(
                model, name, value, dialect=dialect, label=f"primary key {name!r}", field=name
            )
        )
    return tuple(converted)


_PLAIN_KEY_TYPES = (int, str, uuid.UUID)


def is_own_instance(model: type[Any], obj: Any, *, owner: str) -> bool:
    """Whether *obj* is an instance of *model* (``False`` for data such as a mapping).

    Raises:
        TypeError: *obj* is an instance of another mapped class (*owner* names the
            repository class in the message).
    """
    if obj is None or type(obj) is dict:
        return False
    if isinstance(obj, model):
        return True
    if _is_instance_state(inspect(obj, raiseerr=False)):
        raise TypeError(
            f"{owner} handles {model.__name__} objects, got a {type(cast(object, obj)).__name__}"
        )
    return False


def drop_unchanged_key(model: type[Any], fields: dict[str, Any], current: Sequence[Any]) -> None:
    """Remove primary-key fields equal to the *current* key from *fields*.

    Raises:
        InvalidFieldError: A primary-key field differs: ``update()`` never changes a
            primary key (it would orphan identity-map entries and references).
    """
    meta = model_meta(model)
    for name, value in zip(meta.pk, current, strict=True):
        if name in fields:
            if fields[name] != value:
                raise InvalidFieldError(
                    f"primary key {name!r} of {model.__name__} cannot be changed "
                    f"by update() ({value!r} -> {fields[name]!r})",
                    model=model,
                    field=name,
                    choices=sorted(meta.writable_keys - set(meta.pk)),
                )
            del fields[name]
