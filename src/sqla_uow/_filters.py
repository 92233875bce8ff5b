"""Keyword lookups, ``order_by`` parsing and value extraction, validated against the mapper.

Every name a caller passes (a filter such as ``email__ilike``, an ordering such as
``"-created_at"``, a field to assign) is checked against the model's mapped column
attributes before any SQL is built. Names never reach SQL text: they select a mapped
attribute, and values are always bound parameters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, TypeAlias, TypeGuard, TypeVar, cast, runtime_checkable

from sqlalchemy import ColumnElement, inspect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import ColumnProperty, Mapper, QueryableAttribute
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.schema import Column
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.sqltypes import NULLTYPE
from sqlalchemy.sql.visitors import InternalTraversal

from .exceptions import InvalidFieldError, MultipleResultsError, NotFoundError

_T = TypeVar("_T")

INT64_MAX = 2**63 - 1
"""The largest integer a limit, offset or cursor value may be (a signed 64-bit integer)."""

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
    "check_window",
    "compile_order_by",
    "compile_where",
    "drop_unchanged_key",
    "identity_of",
    "is_own_instance",
    "lookup_key",
    "mapper_of",
    "model_columns",
    "model_meta",
    "order_clauses",
    "order_items",
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
    pk_types: tuple[type[Any] | None, ...]
    """Python types of the primary-key columns (``None`` where the type has none)."""
    nullable: frozenset[str]
    """Keys of the filterable attributes that can hold NULL (SQL expressions included)."""
    python_types: dict[str, type[Any] | None]
    joins_collections: bool
    """Whether the mapper eagerly joins a collection (its rows repeat per related row)."""
    integer_keys: frozenset[str]
    """Keys of the integer columns (whose values must fit in 64 bits)."""


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
        pk_types=tuple(python_types[key] for key in pk),
        nullable=nullable,
        python_types=python_types,
        integer_keys=frozenset(key for key, kind in python_types.items() if kind is int),
        joins_collections=any(rel.uselist and rel.lazy == "joined" for rel in mapper.relationships),
    )
    _META[model] = meta
    return meta


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


def _require_not_none(model: type[Any], name: str, value: Any) -> None:
    if value is None:
        raise InvalidFieldError(
            f"filter {name!r} on {model.__name__} got None; "
            "use field=None or field__is_null=True to match NULL",
            model=model,
            field=name,
        )


def _check_int_range(model: type[Any], name: str, value: Any) -> None:
    """Refuse integers no database column holds, before the driver fails on them."""
    checked: object = value
    values: Iterable[object] = (
        cast("Iterable[object]", checked)
        if isinstance(checked, (list, tuple, set, frozenset))
        else (checked,)
    )
    for item in values:
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > INT64_MAX:
            raise InvalidFieldError(
                f"filter {name!r} on {model.__name__} got {item}, outside the 64-bit "
                "integer range of the column",
                model=model,
                field=name,
            )


def _lookup_eq(model: type[Any], name: str, col: ColumnElement[Any], value: Any) -> Any:
    return col.is_(None) if value is None else col == value


def _lookup_ne(model: type[Any], name: str, col: ColumnElement[Any], value: Any) -> Any:
    return col.is_not(None) if value is None else col != value


def _lookup_in(model: type[Any], name: str, col: ColumnElement[Any], value: Any) -> Any:
    # isinstance() on an object alias: the Any value keeps no unknown type arguments.
    checked: object = value
    if isinstance(checked, (str, bytes, bytearray, Mapping)) or not isinstance(checked, Iterable):
        raise InvalidFieldError(
            f"filter {name!r} on {model.__name__} needs a list, tuple or set of values, "
            f"got {type(value).__name__}",
            model=model,
            field=name,
        )
    return col.in_(list(value))


def _comparison(op: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def lookup(model: type[Any], name: str, col: ColumnElement[Any], value: Any) -> Any:
        _require_not_none(model, name, value)
        return op(col, value)

    return lookup


def _pattern(method: str) -> Callable[..., Any]:
    def lookup(model: type[Any], name: str, col: ColumnElement[Any], value: Any) -> Any:
        if not isinstance(value, str):
            raise InvalidFieldError(
                f"filter {name!r} on {model.__name__} needs a string pattern, "
                f"got {type(value).__name__}",
                model=model,
                field=name,
            )
        return getattr(col, method)(value)

    return lookup


def _lookup_not_in(model: type[Any], name: str, col: ColumnElement[Any], value: Any) -> Any:
    return ~_lookup_in(model, name, col, value)


def _lookup_between(model: type[Any], name: str, col: ColumnElement[Any], value: Any) -> Any:
    checked: object = value
    bounds = (
        list(cast("Iterable[object]", checked))
        if isinstance(checked, (list, tuple)) and len(cast("Sequence[object]", checked)) == 2
        else None
    )
    if bounds is None or any(bound is None for bound in bounds):
        raise InvalidFieldError(
            f"filter {name!r} on {model.__name__} needs a (low, high) pair of values, "
            f"got {value!r}",
            model=model,
            field=name,
        )
    return col.between(bounds[0], bounds[1])


def _escaped_pattern(method: str) -> Callable[..., Any]:
    """A substring lookup whose value is literal text: ``%``, ``_`` and ``/`` are escaped."""

    def lookup(model: type[Any], name: str, col: ColumnElement[Any], value: Any) -> Any:
        if not isinstance(value, str):
            raise InvalidFieldError(
                f"filter {name!r} on {model.__name__} needs a string, got {type(value).__name__}",
                model=model,
                field=name,
            )
        return getattr(col, method)(value, autoescape=True)

    return lookup


def _lookup_is_null(model: type[Any], name: str, col: ColumnElement[Any], value: Any) -> Any:
    if not isinstance(value, bool):
        raise InvalidFieldError(
            f"filter {name!r} on {model.__name__} needs True or False, got {type(value).__name__}",
            model=model,
            field=name,
        )
    return col.is_(None) if value else col.is_not(None)


_LOOKUP_FUNCTIONS: dict[str, Callable[[type[Any], str, ColumnElement[Any], Any], Any]] = {
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
) -> list[ColumnElement[bool]]:
    """Combine SQL expressions and keyword filters into a list of WHERE criteria.

    ``field=value`` compares for equality (``field=None`` means ``IS NULL``);
    ``field__<lookup>=value`` applies a lookup: ``eq``, ``ne``, ``in``, ``not_in``, ``gt``,
    ``gte``, ``lt``, ``lte``, ``between`` (a ``(low, high)`` pair, inclusive), ``like``,
    ``ilike``, ``startswith``, ``istartswith``, ``endswith``, ``contains``, ``icontains``
    (literal text: ``%`` and ``_`` in the value match only themselves), ``is_null``.
    Comparisons follow SQL: a row whose column is NULL matches neither ``field__ne=x``
    nor ``field__gt=x`` nor ``field__not_in=[x]``.

    Raises:
        InvalidFieldError: An unknown field or lookup, or a value of the wrong kind
            (``__in`` needs a non-string iterable, ``__is_null`` a bool, ``__like`` a str,
            comparisons a non-None value, an integer column an integer within 64 bits).

    Example:
        ```python
        criteria = compile_where(User, [User.id > 10], {"email__ilike": "%@example.com"})
        stmt = select(User).where(*criteria)
        ```
    """
    meta = model_meta(model)
    columns = meta.filterable
    integer_keys = meta.integer_keys
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
        if key in integer_keys:
            _check_int_range(model, name, value)
        criteria.append(_LOOKUP_FUNCTIONS[lookup](model, name, _attribute(model, key), value))
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
    """Check the ``chunk_size`` of ``stream`` / ``stream_chunks``: an ``int`` of at least 1.

    Raises:
        InvalidFieldError: Another type, or a value below 1.
    """
    # Checked at run time: callers without a type checker may pass anything.
    size: Any = chunk_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidFieldError(
            f"chunk_size must be an int of at least 1, got {chunk_size!r}",
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


def identity_of(model: type[Any], pk: Any) -> tuple[Any, ...]:
    """Normalise a primary key (a value, a tuple or a mapping by key) to an identity tuple.

    Raises:
        InvalidFieldError: *pk* does not fit the primary key (wrong keys or number of
            values, or a ``None``).
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
    for value in values:
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
    return values


_PLAIN_KEY_TYPES = (int, str, uuid.UUID)
_COERCIBLE: tuple[type[Any], ...] = (int, uuid.UUID, Decimal)
_INT_TEXT = re.compile(r"-?[0-9]+")


def lookup_key(model: type[Any], ident: tuple[Any, ...]) -> tuple[Any, ...]:
    """*ident* with each value converted to its column's Python type where that is exact.

    The database compares a key given as ``"1"`` (or a UUID as a string) with the
    column's own type; this makes the same key match the identity the row comes back
    with (``(1,)``). Values that do not convert are left as they are.
    """
    types = model_meta(model).pk_types
    converted: list[Any] = []
    for value, expected in zip(ident, types, strict=True):
        if (
            isinstance(value, str)
            and expected in _COERCIBLE
            and (expected is not int or _INT_TEXT.fullmatch(value) is not None)
        ):
            with contextlib.suppress(ValueError, TypeError, InvalidOperation):
                value = expected(value)
        converted.append(value)
    return tuple(converted)


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
