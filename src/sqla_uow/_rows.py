"""The rows of the bulk methods: checks, grouping, chunking, defaults and driver values.

Shared by the real bulk methods (`sqla_uow._bulk`) and the in-memory fakes
(`sqla_uow.testing`), so both refuse the same rows with the same messages. Every check
runs over all rows before any SQL is sent.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, TypeGuard, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.schema import Table

from ._dialects import UtcNow
from ._filters import as_values, check_assignable, check_write_values
from ._model import ModelMeta, value_rule
from ._values import ValueRule
from .exceptions import InvalidFieldError

__all__ = [
    "DefaultContext",
    "check_all_rows",
    "check_chunk_size",
    "check_column_names",
    "check_key_shapes",
    "check_unique_rows",
    "check_update_rows",
    "check_upsert_options",
    "check_upsert_rows",
    "default_value",
    "duplicate_row_error",
    "fill_defaults",
    "group_by_keys",
    "is_clock",
    "refuse_unbounded_delete",
    "row_error",
    "row_values",
    "single_table",
    "without_null_generated_keys",
]


class DefaultContext:
    """The part of SQLAlchemy's execution context a column default function may read."""

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.current_parameters = parameters

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> dict[str, Any]:
        """The values of the row being written, by column key."""
        return self.current_parameters


def _is_instance_state(value: object) -> TypeGuard[InstanceState[Any]]:
    return isinstance(value, InstanceState)


def row_error(model: type[Any], index: int, message: str, **kwargs: Any) -> InvalidFieldError:
    """`InvalidFieldError` for row *index* of a bulk call."""
    return InvalidFieldError(f"row {index} of {model.__name__}: {message}", model=model, **kwargs)


def check_chunk_size(model: type[Any], chunk_size: int | None) -> None:
    """Refuse a ``chunk_size`` that is neither None nor a positive int."""
    if chunk_size is None:
        return
    if type(chunk_size) is not int or chunk_size < 1:
        raise InvalidFieldError(
            f"chunk_size must be a positive int or None, got {chunk_size!r}",
            model=model,
            field="chunk_size",
        )


def check_all_rows(model: type[Any], all_rows: object) -> None:
    """Refuse an ``all_rows`` that is not a bool."""
    if not isinstance(all_rows, bool):
        raise InvalidFieldError(
            f"all_rows must be True or False, got {all_rows!r}", model=model, field="all_rows"
        )


def refuse_unbounded_delete(
    model: type[Any], *, has_criteria: bool, all_rows: bool, fields: Iterable[str]
) -> None:
    """Refuse a ``delete_where`` with no criteria unless ``all_rows=True`` asks for it."""
    if not has_criteria and not all_rows:
        raise InvalidFieldError(
            f"delete_where() without criteria would delete every {model.__name__} "
            "row; pass filters, or all_rows=True to delete them all",
            model=model,
            field="all_rows",
            choices=sorted(fields),
        )


def duplicate_row_error(
    model: type[Any], index: int, first: int, conflict: Sequence[str], identity: Any
) -> InvalidFieldError:
    """Row *index* repeats the *conflict* values *identity* of row *first*."""
    return row_error(
        model,
        index,
        f"same {', '.join(conflict)} as row {first} ({identity!r}); "
        "one statement cannot write a row twice",
        field=conflict[0],
    )


def single_table(meta: ModelMeta, method: str) -> Table:
    """The model's one table; `TypeError` for a model of joined-table inheritance."""
    if meta.table is None:
        raise TypeError(
            f"{method} needs {meta.name} mapped to a single table; "
            "models of joined-table inheritance are not supported"
        )
    return meta.table


def row_values(
    meta: ModelMeta, rows: Iterable[Any], *, dialect: Dialect | None, copy: bool = True
) -> list[dict[str, Any]]:
    """Every row as a dict of attribute values, all validated before any SQL.

    A row is a mapping, an instance of the model (without relationships set), a pydantic
    model or a dataclass. Names must be writable columns and values ones their columns
    can store (see `check_write_values`; *dialect* None checks as the fakes do). Plain
    dicts are copied unless *copy* is false (the caller then must not mutate them; a
    row whose values were converted is a copy).
    """
    model = meta.model
    writable = meta.writable_keys
    result: list[dict[str, Any]] = []
    names: dict[str, None] = {}
    last_keys: Any = None
    shapes = 0
    refused: InvalidFieldError | None = None  # of a row's kind or names
    for index, row in enumerate(rows):
        values: dict[str, Any]
        try:
            if row.__class__ is dict:  # (not narrowed: the row stays Any, as dict[str, Any])
                values = dict(row) if copy else row
            else:
                values = _other_row(meta, index, row)
            keys = values.keys()
            if keys != last_keys:
                if not writable.issuperset(keys):
                    check_assignable(model, values)
                names.update(dict.fromkeys(keys))
                last_keys = keys
                shapes += 1
        except InvalidFieldError as error:
            refused = error  # raised unless a value of an earlier row is bad
            break
        result.append(values)
    # Values column by column: a whole column the rule passes at once is done; the
    # others are checked value by value, row by row (the first bad row is reported).
    slow = {
        name
        for name in names
        if not _column_passes(
            value_rule(model, name, dialect, write=True), result, name, every=shapes == 1
        )
    }
    if slow:
        checks: dict[str, Callable[[Any], Any]] = {}
        result = [
            check_write_values(model, values, dialect=dialect, row=index, checks=checks, only=slow)
            for index, values in enumerate(result)
        ]
    if refused is not None:
        raise refused
    return result


def _other_row(meta: ModelMeta, index: int, row: Any) -> dict[str, Any]:
    """The values of row *index*, not a plain dict: a mapping, an instance of the model, a
    pydantic model or a dataclass."""
    state: object = getattr(row, "_sa_instance_state", None)
    if _is_instance_state(state):
        _check_instance(meta, index, state)
    try:
        return as_values(row, {})
    except TypeError as exc:
        raise row_error(meta.model, index, str(exc)) from None


def _column_passes(rule: ValueRule, rows: list[dict[str, Any]], name: str, *, every: bool) -> bool:
    """Whether *rule* passes the values of *name* in the rows (absent: ``None``) at once.

    *every*: every row gives *name*.
    """
    if rule.passes is None:
        return False
    values = list(map(itemgetter(name), rows)) if every else [row.get(name) for row in rows]
    return rule.passes(values)


def _check_instance(meta: ModelMeta, index: int, state: InstanceState[Any]) -> None:
    if state.mapper is not meta.mapper:
        raise row_error(
            meta.model,
            index,
            f"got a {state.mapper.class_.__name__} instance, expected a mapping or a {meta.name}",
        )
    for name in meta.relationships.intersection(state.dict):
        if state.dict[name]:
            raise row_error(
                meta.model,
                index,
                f"relationship {name!r} is set; bulk writes store columns only "
                "(use create() to cascade relationships)",
                field=name,
                choices=sorted(meta.writable_keys),
            )


def without_null_generated_keys(
    meta: ModelMeta, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """*rows* with ``None`` dropped from primary-key columns the database generates.

    A row such as ``{"id": None, ...}`` (typical of pydantic input models) asks for a
    generated key, as it does with ``session.add``; rows without such an entry are
    returned as they are, the others as new dicts.
    """
    generated = meta.generated_pk
    if not generated:
        return rows
    asking = sorted(
        {index for name in generated for index, row in enumerate(rows) if row.get(name, 0) is None}
    )
    if not asking:
        return rows
    result = list(rows)
    for index in asking:
        result[index] = {
            name: value
            for name, value in rows[index].items()
            if value is not None or name not in generated
        }
    return result


def group_by_keys(rows: list[dict[str, Any]]) -> dict[frozenset[str], list[int]]:
    """Row positions by the set of keys the row gives, in input order."""
    groups: dict[frozenset[str], list[int]] = {}
    last_keys: Any = None
    last_group: list[int] = []
    for index, row in enumerate(rows):
        keys = row.keys()
        if keys != last_keys:
            last_keys = keys
            last_group = groups.setdefault(frozenset(keys), [])
        last_group.append(index)
    return groups


def check_unique_rows(
    model: type[Any], rows: list[dict[str, Any]], conflict: tuple[str, ...]
) -> None:
    """Refuse two rows with the same *conflict* values (one statement cannot write both)."""
    get = cast("Callable[[dict[str, Any]], Any]", itemgetter(*conflict))
    try:
        identities: list[Any] = [get(row) for row in rows]
        if len(set(identities)) == len(identities):
            return
    except TypeError:  # unhashable values: leave it to the database
        return
    seen: dict[Any, int] = {}
    for index, identity in enumerate(identities):
        first = seen.setdefault(identity, index)
        if first != index:
            raise duplicate_row_error(model, index, first, conflict, identity)


def check_update_rows(meta: ModelMeta, groups: Mapping[frozenset[str], list[int]]) -> None:
    """Refuse an ``update_many`` row without its whole primary key or with nothing to set.

    *groups* are the rows' positions by their keys (`group_by_keys`).
    """
    pk, model = meta.pk, meta.model
    fields = sorted(meta.writable_keys)
    for keys, indexes in groups.items():  # in the order of each group's first row
        missing = [name for name in pk if name not in keys]
        if missing:
            raise row_error(
                model,
                indexes[0],
                f"update_many needs the primary key {', '.join(map(repr, missing))} in "
                f"every row; this row has: {', '.join(sorted(keys)) or 'nothing'}",
                field=missing[0],
                choices=pk,
            )
        if len(keys) == len(pk):
            raise row_error(
                model,
                indexes[0],
                "update_many row sets no column besides the primary key; "
                f"fields: {', '.join(fields)}",
                choices=fields,
            )


def check_column_names(meta: ModelMeta, option: str, names: Sequence[str]) -> tuple[str, ...]:
    """The names of an ``on_conflict`` / ``update`` option, each a writable column."""
    if isinstance(names, str):
        names = (names,)
    for name in names:
        if name not in meta.writable_keys:
            raise InvalidFieldError(
                f"{option} names {name!r}, which is not a column of {meta.name}; "
                f"columns: {', '.join(sorted(meta.writable_keys))}",
                model=meta.model,
                field=name,
                choices=sorted(meta.writable_keys),
            )
    return tuple(names)


def check_upsert_options(
    meta: ModelMeta, on_conflict: Sequence[str], update: Sequence[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """The ``on_conflict`` and ``update`` names of an ``upsert_many``, checked.

    Refuses an unknown or empty ``on_conflict``, and an unknown ``update`` name or the
    version counter.
    """
    conflict = check_column_names(meta, "on_conflict", on_conflict)
    if not conflict:
        raise InvalidFieldError(
            "on_conflict needs at least one column",
            model=meta.model,
            field="on_conflict",
            choices=sorted(meta.writable_keys),
        )
    explicit = None if update is None else check_column_names(meta, "update", update)
    if explicit and meta.version_key in explicit:
        raise InvalidFieldError(
            f"update={explicit!r} names {meta.version_key!r}, the version counter of "
            f"{meta.name}: every updated row gets its version incremented",
            model=meta.model,
            field="update",
        )
    return conflict, explicit


def check_upsert_rows(
    meta: ModelMeta,
    rows: list[dict[str, Any]],
    groups: Mapping[frozenset[str], list[int]],
    conflict: tuple[str, ...],
    explicit: tuple[str, ...] | None,
) -> None:
    """Refuse ``upsert_many`` *rows* without an ``on_conflict`` or ``update`` column, or
    two rows with the same ``on_conflict`` values.

    *groups* are the rows' positions by their keys (`group_by_keys`).
    """
    needed = conflict if explicit is None else (*conflict, *explicit)
    for keys, indexes in groups.items():
        missing = [name for name in needed if name not in keys]
        if missing:
            what = "on_conflict" if missing[0] in conflict else "update"
            raise row_error(
                meta.model,
                indexes[0],
                f"upsert_many rows need the {what} column {missing[0]!r}; "
                f"this row has: {', '.join(sorted(keys)) or 'nothing'}",
                field=missing[0],
                choices=sorted(meta.writable_keys),
            )
    check_unique_rows(meta.model, rows, conflict)


def check_key_shapes(meta: ModelMeta, keys: Sequence[Any]) -> None:
    """Refuse a composite primary key that is not a tuple (or list) of the right length."""
    width = len(meta.pk)
    if width == 1:
        return
    for index, key in enumerate(keys):
        if not isinstance(key, (tuple, list)) or len(cast("Sequence[Any]", key)) != width:
            raise row_error(
                meta.model,
                index,
                f"a primary key of {meta.name} is a tuple of "
                f"{width} values ({', '.join(meta.pk)}), got {key!r}",
                field=meta.pk[0],
                choices=meta.pk,
            )


def default_value(default: Any, values: Mapping[str, Any]) -> Any:
    """The value a Python-side column default (or onupdate) gives a row of *values*."""
    if getattr(default, "is_scalar", False):
        return copy.copy(default.arg)
    if getattr(default, "is_callable", False):
        return default.arg(DefaultContext(dict(values)))
    return None


def is_clock(default: Any) -> bool:
    """Whether a column's default, server default or onupdate is the UTC clock of
    `sqla_uow.mixins.TimestampMixin`."""
    return isinstance(getattr(default, "arg", None), UtcNow)


def fill_defaults(
    meta: ModelMeta, rows: list[dict[str, Any]], missing: Sequence[str]
) -> list[dict[str, Any]]:
    """*rows* with the Python-side defaults of the *missing* attributes filled in.

    Rows are copied only when something is filled in; a callable default sees the row's
    values by column key, as SQLAlchemy's execution context shows them.
    """
    defaults = meta.python_defaults
    if not missing or defaults is None:
        return rows
    scalars = {name: defaults[name][1] for name in missing if defaults[name][0] == "scalar"}
    callables = [name for name in missing if name not in scalars]
    if not callables:
        return [{**scalars, **row} for row in rows]
    columns = meta.columns
    filled: list[dict[str, Any]] = []
    for row in rows:
        context = DefaultContext({columns[name].key: value for name, value in row.items()})
        new = {**scalars, **row}
        for name in callables:
            new[name] = defaults[name][1](context)
        filled.append(new)
    return filled
