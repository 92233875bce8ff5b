"""Keyword lookups, ``order_by`` parsing and value extraction, validated against the mapper.

Every name a caller passes (a filter such as ``email__ilike``, an ordering such as
``"-created_at"``, a field to assign) is checked against the model's mapped column
attributes before any SQL is built. Names never reach SQL text: they select a mapped
attribute, and values are always bound parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeGuard, cast

from sqlalchemy import ColumnElement, inspect
from sqlalchemy.orm import ColumnProperty, Mapper, QueryableAttribute
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.schema import Column
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from .exceptions import InvalidFieldError

__all__ = [
    "LOOKUPS",
    "as_values",
    "check_assignable",
    "check_window",
    "compile_order_by",
    "compile_where",
    "filterable_columns",
    "mapper_of",
    "model_columns",
    "primary_key_names",
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


def mapper_of(model: type[Any]) -> Mapper[Any]:
    """The mapper of *model*; `TypeError` when it is not a mapped class."""
    mapper: object = inspect(model, raiseerr=False)
    if not _is_mapper(mapper):
        raise TypeError(f"{model!r} is not a mapped class")
    return mapper


def model_columns(model: type[Any]) -> dict[str, ColumnProperty[Any]]:
    """The writable mapped column attributes of *model*, by attribute key.

    Only attributes mapped to a table column are included; a ``column_property`` over a
    SQL expression is readable and filterable but cannot be written, so it is left out.

    Example:
        ```python
        model_columns(User)  # {"id": ..., "email": ..., "name": ...}
        ```
    """
    return {
        prop.key: prop
        for prop in mapper_of(model).column_attrs
        if all(isinstance(col, Column) for col in prop.columns)
    }


def filterable_columns(model: type[Any]) -> dict[str, ColumnProperty[Any]]:
    """Every mapped column attribute of *model* (including SQL-expression properties)."""
    return {prop.key: prop for prop in mapper_of(model).column_attrs}


def primary_key_names(model: type[Any]) -> tuple[str, ...]:
    """The attribute keys of *model*'s primary-key columns, in primary-key order."""
    mapper = mapper_of(model)
    return tuple(mapper.get_property_by_column(col).key for col in mapper.primary_key)


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
}
LOOKUPS: tuple[str, ...] = tuple(sorted(_LOOKUP_FUNCTIONS))
"""The lookup suffixes ``compile_where`` accepts after ``field__``."""


def compile_where(
    model: type[Any],
    where: Sequence[ColumnElement[bool]],
    filters: Mapping[str, Any],
) -> list[ColumnElement[bool]]:
    """Combine SQL expressions and keyword filters into a list of WHERE criteria.

    ``field=value`` compares for equality (``field=None`` means ``IS NULL``);
    ``field__<lookup>=value`` applies a lookup: ``eq``, ``ne``, ``in``, ``gt``, ``gte``,
    ``lt``, ``lte``, ``like``, ``ilike``, ``is_null``. Comparisons follow SQL: a row whose
    column is NULL matches neither ``field__ne=x`` nor ``field__gt=x``.

    Raises:
        InvalidFieldError: An unknown field or lookup, or a value of the wrong kind
            (``__in`` needs a non-string iterable, ``__is_null`` a bool, ``__like`` a str,
            comparisons a non-None value).

    Example:
        ```python
        criteria = compile_where(User, [User.id > 10], {"email__ilike": "%@example.com"})
        stmt = select(User).where(*criteria)
        ```
    """
    columns = filterable_columns(model)
    criteria: list[ColumnElement[bool]] = []
    for expression in where:
        # Checked at run time: callers without a type checker may pass anything.
        candidate = cast(object, expression)
        if not isinstance(candidate, ColumnElement):
            raise InvalidFieldError(
                f"positional filters on {model.__name__} must be SQL expressions "
                f"such as User.id > 3, got {type(candidate).__name__}",
                model=model,
            )
        criteria.append(expression)
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
        columns = filterable_columns(model)
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
        choices=sorted(filterable_columns(model)),
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
    for name, prop in filterable_columns(model).items():
        if any(expression is col for col in prop.columns):
            return name
    annotations: Mapping[str, Any] = getattr(expression, "_annotations", {})
    key: Any = annotations.get("proxy_key")
    entity: Any = annotations.get("parententity")
    if (
        isinstance(key, str)
        and _is_mapper(entity)
        and mapper_of(model).isa(entity)
        and key in filterable_columns(model)
    ):
        return key
    return None


def _order_items(order_by: Any) -> list[Any]:
    if order_by is None:
        return []
    if isinstance(order_by, (str, ColumnElement, QueryableAttribute)):
        return [order_by]
    if _is_iterable(order_by):
        return list(order_by)
    return [order_by]


def compile_order_by(model: type[Any], order_by: Any) -> list[ColumnElement[Any]]:
    """Turn ``order_by`` into ORDER BY expressions.

    Accepts ``None``, a field name (``"name"``; ``"-created_at"`` for descending), a
    column expression (``User.name``, ``User.name.desc()``), or a sequence of these.

    Raises:
        InvalidFieldError: An unknown field name or an item of another type.

    Example:
        ```python
        stmt = select(User).order_by(*compile_order_by(User, ["-created_at", "id"]))
        ```
    """
    clauses: list[ColumnElement[Any]] = []
    for item in _order_items(order_by):
        if isinstance(item, str):
            expression, descending, _ = parse_order_item(model, item)
            clauses.append(expression.desc() if descending else expression.asc())
        elif _is_queryable_attribute(item):
            clauses.append(item.expression)
        elif _is_column_element(item):
            clauses.append(item)
        else:
            parse_order_item(model, item)  # raises
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
    columns = model_columns(model)
    mapper = mapper_of(model)
    pk_names = primary_key_names(model) if not allow_primary_key else ()
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
        InvalidFieldError: A negative value or a value that is not an ``int``.
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
