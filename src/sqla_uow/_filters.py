"""Keyword lookups, ``order_by`` parsing and value extraction, validated against the mapper.

Every name a caller passes (a filter such as ``email__ilike``, an ordering such as
``"-created_at"``, a field to assign) is checked against the model's mapped column
attributes before any SQL is built. Names never reach SQL text: they select a mapped
attribute, and values are always bound parameters.
"""

from __future__ import annotations

import dataclasses
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, TypeGuard, TypeVar, cast, runtime_checkable

from sqlalchemy import ColumnElement, inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import ColumnProperty, Mapper, QueryableAttribute
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.schema import Column, UniqueConstraint
from sqlalchemy.sql import ClauseElement, operators
from sqlalchemy.sql.elements import UnaryExpression

from ._dialects import backend_for
from ._dialects._elements import NullFlag
from ._values import ValueMismatch, ValueRule, check_text, describe, rule_for_type
from .exceptions import InvalidFieldError, MultipleResultsError, NotFoundError

_T = TypeVar("_T")

INT64_MAX = 2**63 - 1
"""The largest integer a limit, offset or cursor value may be (a signed 64-bit integer)."""
INT32_MAX = 2**31 - 1
"""The largest ``chunk_size`` of a stream (drivers fetch with a C ``int`` row count)."""

__all__ = [
    "INT64_MAX",
    "LOOKUPS",
    "ModelMeta",
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
    "mapper_of",
    "model_columns",
    "model_meta",
    "order_clauses",
    "order_items",
    "unique_key_error",
    "value_rule",
]


# ``isinstance`` against a generic class leaves the type arguments unknown to pyright
# (mypy fills in ``Any``); these guards narrow to the ``Any``-parametrised type for both.


def _is_mapper(value: object) -> TypeGuard[Mapper[Any]]:
    return isinstance(value, Mapper)


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


@dataclasses.dataclass(frozen=True)
class ModelMeta:
    """What the repositories read from a model's mapper, computed once per model.

    Valid as long as the mapper's ``column_attrs`` are (a property added to the mapper
    later replaces them, and the entry is rebuilt).
    """

    mapper: Mapper[Any]
    attrs: Any
    """The ``mapper.column_attrs`` this entry was built from."""
    filterable: dict[str, ColumnProperty[Any]]
    """Every mapped column attribute (including SQL-expression properties), by key."""
    writable: dict[str, ColumnProperty[Any]]
    """The column attributes mapped to a table column, by key."""
    writable_keys: frozenset[str]
    pk: tuple[str, ...]
    """Attribute keys of the primary-key columns, in primary-key order."""
    nullable: frozenset[str]
    """Keys of the filterable attributes that can hold NULL (SQL expressions included)."""
    python_types: dict[str, type[Any] | None]
    joins_collections: bool
    """Whether the mapper eagerly joins a collection (its rows repeat per related row)."""
    unique: tuple[tuple[str | None, tuple[str, ...]], ...]
    """(constraint name, attribute keys) of the primary key and every unique constraint
    or unique index the table declares."""
    rules: dict[tuple[str, str | None, bool], ValueRule]
    """The value rule of each (attribute key, dialect name, for writes), built on first use."""


_META: weakref.WeakKeyDictionary[type[Any], ModelMeta] = weakref.WeakKeyDictionary()


def _python_type(prop: ColumnProperty[Any]) -> type[Any] | None:
    try:
        found: type[Any] = prop.columns[0].type.python_type
    except NotImplementedError:
        return None
    return found


def model_meta(model: type[Any]) -> ModelMeta:
    """The cached `ModelMeta` of *model*; `TypeError` when it is not a mapped class."""
    meta = _META.get(model)
    if meta is not None and meta.mapper.column_attrs is meta.attrs:
        return meta
    found: object = inspect(model, raiseerr=False)
    if not _is_mapper(found):
        raise TypeError(f"{model!r} is not a mapped class")
    mapper = found
    attrs = mapper.column_attrs
    filterable = {prop.key: prop for prop in attrs}
    writable = {
        key: prop
        for key, prop in filterable.items()
        if all(isinstance(col, Column) for col in prop.columns)
    }
    pk = tuple(mapper.get_property_by_column(col).key for col in mapper.primary_key)
    nullable = frozenset(
        key
        for key, prop in filterable.items()
        if not all(isinstance(col, Column) and not col.nullable for col in prop.columns)
    )
    python_types = {key: _python_type(prop) for key, prop in filterable.items()}
    meta = ModelMeta(
        mapper=mapper,
        attrs=attrs,
        filterable=filterable,
        writable=writable,
        writable_keys=frozenset(writable),
        pk=pk,
        nullable=nullable,
        python_types=python_types,
        unique=_unique_keys(mapper, writable, pk),
        rules={},
        joins_collections=any(rel.uselist and rel.lazy == "joined" for rel in mapper.relationships),
    )
    _META[model] = meta
    return meta


def _unique_keys(
    mapper: Mapper[Any], writable: Mapping[str, ColumnProperty[Any]], pk: tuple[str, ...]
) -> tuple[tuple[str | None, tuple[str, ...]], ...]:
    by_column: dict[Any, str] = {prop.columns[0]: key for key, prop in writable.items()}
    found: list[tuple[str | None, tuple[str, ...]]] = [(None, pk)]
    seen = {pk}
    groups: list[tuple[Any, Iterable[Any]]] = []
    table: Any = mapper.local_table
    for constraint in getattr(table, "constraints", ()):
        if isinstance(constraint, UniqueConstraint):
            groups.append((constraint.name, constraint.columns))
    for index in getattr(table, "indexes", ()):
        if index.unique:
            groups.append((index.name, index.columns))
    for name, cols in groups:
        keys = tuple(by_column[col] for col in cols if col in by_column)
        if keys and keys not in seen:
            seen.add(keys)
            found.append((name if isinstance(name, str) else None, keys))
    return tuple(found)


def unique_key_error(model: type[Any], conflict: Sequence[str]) -> InvalidFieldError:
    """The error for an ``upsert_many(on_conflict=...)`` that names no unique key of *model*."""
    choices = [", ".join(keys) for _, keys in model_meta(model).unique]
    return InvalidFieldError(
        f"on_conflict={tuple(conflict)!r} is not the primary key or a unique constraint of "
        f"{model.__name__}; the database would reject it. Unique: {'; '.join(choices)}",
        model=model,
        field="on_conflict",
        choices=choices,
    )


def value_rule(
    model: type[Any], key: str, dialect: Dialect | None, *, write: bool = False
) -> ValueRule:
    """The rule for values of *model*'s column attribute *key* on *dialect* (cached)."""
    meta = model_meta(model)
    cache_key = (key, dialect.name if dialect is not None else None, write)
    rule = meta.rules.get(cache_key)
    if rule is None:
        rule = rule_for_type(meta.filterable[key].columns[0].type, dialect, write=write)
        meta.rules[cache_key] = rule
    return rule


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


def mapper_of(model: type[Any]) -> Mapper[Any]:
    """The mapper of *model*; `TypeError` when it is not a mapped class."""
    return model_meta(model).mapper


def model_columns(model: type[Any]) -> dict[str, ColumnProperty[Any]]:
    """The writable mapped column attributes of *model*, by attribute key.

    Only attributes mapped to a table column are included; a ``column_property`` over a
    SQL expression is readable and filterable but cannot be written, so it is left out.

    Example:
        ```python
        model_columns(User)  # {"id": ..., "email": ..., "name": ...}
        ```
    """
    return dict(model_meta(model).writable)


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
        key = _mapped_key(model, inner)
        return inner.expression, descending, key
    if _is_column_element(inner):
        return inner, descending, _mapped_key(model, inner)
    raise InvalidFieldError(
        f"order_by on {model.__name__} takes field names ('name', '-created_at') or column "
        f"expressions, got {type(item).__name__}",
        model=model,
        field=repr(item),
        choices=sorted(model_meta(model).filterable),
    )


def _mapped_key(model: type[Any], expression: object) -> str | None:
    """The attribute key of *model* that *expression* denotes, if it is one."""
    if _is_queryable_attribute(expression):
        if not isinstance(expression.property, ColumnProperty):
            return None
        parent = expression.parent
        if isinstance(parent, Mapper) and mapper_of(model).isa(parent):
            return expression.key
        return None
    meta = model_meta(model)
    for name, prop in meta.filterable.items():
        if any(expression is col for col in prop.columns):
            return name
    annotations: Mapping[str, Any] = getattr(expression, "_annotations", {})
    key: Any = annotations.get("proxy_key")
    entity: Any = annotations.get("parententity")
    if (
        isinstance(key, str)
        and _is_mapper(entity)
        and meta.mapper.isa(entity)
        and key in meta.filterable
    ):
        return key
    return None


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
