"""The model's metadata and the checks of caller arguments, validated against the mapper.

Every name a caller passes (a field to assign, a primary key) is checked against the
model's mapped column attributes, and every value against its column's type, before
any SQL is built. Keyword filters are in `sqla_uow._where`, ``order_by`` parsing in
`sqla_uow._ordering`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, TypeGuard, TypeVar, cast

from sqlalchemy import ColumnElement, inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.schema import Column
from sqlalchemy.sql import ClauseElement

from ._model import model_meta, value_rule
from ._values import ValueMismatch, describe
from .exceptions import InvalidFieldError, MultipleResultsError, NotFoundError

_T = TypeVar("_T")

INT64_MAX = 2**63 - 1
"""The largest integer a limit, offset or cursor value may be (a signed 64-bit integer)."""
INT32_MAX = 2**31 - 1
"""The largest ``chunk_size`` of a stream (drivers fetch with a C ``int`` row count)."""

__all__ = [
    "INT64_MAX",
    "as_values",
    "check_assignable",
    "check_page_size",
    "check_stream_chunk_size",
    "check_value",
    "check_window",
    "check_write_values",
    "choices_text",
    "column_expression",
    "drop_unchanged_key",
    "identity_of",
    "is_own_instance",
    "unknown_field_error",
]


# ``isinstance`` against a generic class leaves the type arguments unknown to pyright
# (mypy fills in ``Any``); these guards narrow to the ``Any``-parametrised type for both.


def _is_instance_state(value: object) -> TypeGuard[InstanceState[Any]]:
    return isinstance(value, InstanceState)


def _is_mapping(value: object) -> TypeGuard[Mapping[Any, Any]]:
    return isinstance(value, Mapping)


def check_write_values(
    model: type[Any],
    values: dict[str, Any],
    *,
    dialect: Dialect | None,
    row: int | None = None,
    checks: dict[str, Callable[[Any], Any]] | None = None,
    only: AbstractSet[str] | None = None,
) -> dict[str, Any]:
    """*values* (writable column keys) checked as values to store; converted in a copy.

    ``None`` and SQL expressions are left to the database. A value must be one its
    column's type takes (as for filters) and fit the column's declared length and
    precision. The returned dict is *values* itself when nothing was converted.
    *checks* keeps each key's check across the rows of one bulk call; *only*: the keys
    to check (default: all).

    Raises:
        InvalidFieldError: A value the column cannot store (*row* numbers the row of a
            bulk call in the message); nothing was sent.
    """
    result = values
    for key, value in values.items():
        if (
            value is None
            or isinstance(value, ClauseElement)
            or (only is not None and key not in only)
        ):
            continue
        check = checks.get(key) if checks is not None else None
        if check is None:
            check = value_rule(model, key, dialect, write=True).check
            if checks is not None:
                checks[key] = check
        try:
            checked = check(value)
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


def choices_text(names: Iterable[str]) -> str:
    """*names* sorted and joined with commas, for the list of choices in a message."""
    return ", ".join(sorted(names))


def unknown_field_error(model: type[Any], name: str, fields: Iterable[str]) -> InvalidFieldError:
    """The error for a field *name* that is none of *fields* of *model*."""
    choices = sorted(fields)
    return InvalidFieldError(
        f"unknown field {name!r} on {model.__name__}; fields: {choices_text(choices)}",
        model=model,
        field=name,
        choices=choices,
    )


def column_expression(model: type[Any], key: str) -> ColumnElement[Any]:
    """The SQL expression of *model*'s mapped attribute *key*."""
    attr: QueryableAttribute[Any] = getattr(model, key)
    return attr.expression


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
                f"fields: {choices_text(choices)}",
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
            raise unknown_field_error(model, name, columns)
        raise InvalidFieldError(
            f"field {name!r} on {model.__name__} is {kind}; "
            f"assignable fields: {choices_text(columns)}",
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


def single_key_values(model: type[Any], keys: Iterable[Any], *, dialect: Dialect) -> list[Any]:
    """The checked values of *keys* of *model*'s single-column primary key.

    Each key is checked as `identity_of` checks it, with the column's value rule looked
    up once for all of them: a plain ``int``, ``str`` or ``UUID`` goes straight through
    the rule; anything else (a tuple, a mapping, a value the rule refuses) through
    `identity_of`, which raises its error.
    """
    rule = value_rule(model, model_meta(model).pk[0], dialect)
    values: list[Any] = []
    for key in keys:
        if type(key) in _PLAIN_KEY_TYPES:  # exact types: bool is not an int key here
            try:
                values.append(rule.check(key))
                continue
            except ValueMismatch:
                pass
        values.append(identity_of(model, key, dialect=dialect)[0])
    return values


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
