"""`ModelMeta`: what sqla_uow reads from a model's mapper, computed once per model.

One cache for the repository, the bulk methods, pagination and the fakes. It is keyed
weakly by the mapped class and an entry is rebuilt when the mapper changes (a property
added to the mapper later, or the class mapped again).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard, cast

from sqlalchemy import Integer, inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import ColumnProperty, Mapper, QueryableAttribute
from sqlalchemy.schema import Column, Table, UniqueConstraint

from ._compat import column_annotations
from ._values import ValueRule, rule_for_type
from .exceptions import InvalidFieldError

__all__ = [
    "ModelMeta",
    "mapped_key",
    "mapper_of",
    "model_columns",
    "model_meta",
    "unique_key_error",
    "value_rule",
]


def _is_mapper(value: object) -> TypeGuard[Mapper[Any]]:
    return isinstance(value, Mapper)


def _is_queryable_attribute(value: object) -> TypeGuard[QueryableAttribute[Any]]:
    return isinstance(value, QueryableAttribute)


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
    columns: dict[str, Column[Any]]
    """The table column of each writable attribute, by attribute key, in mapper order."""
    keys_are_column_keys: bool
    """Whether every writable attribute key is also its column's key."""
    pk: tuple[str, ...]
    """Attribute keys of the primary-key columns, in primary-key order."""
    pk_columns: tuple[Column[Any], ...]
    nullable: frozenset[str]
    """Keys of the filterable attributes that can hold NULL (SQL expressions included)."""
    python_types: dict[str, type[Any] | None]
    joins_collections: bool
    """Whether the mapper eagerly joins a collection (its rows repeat per related row)."""
    relationships: frozenset[str]
    unique: tuple[tuple[str | None, tuple[str, ...]], ...]
    """(constraint name, attribute keys) of the primary key and every unique constraint
    or unique index the table declares."""
    table: Table | None
    """The one table the model is mapped to; None for joined-table inheritance."""
    autoincrement: str | None
    """Attribute key of the table's autoincrement column, if any."""
    generated_pk: tuple[str, ...]
    """Attribute keys of the primary-key columns the database (or a default) fills in."""
    rowid_key: Column[Any] | None
    """The single integer key the database generates, on a plain single-table model
    (no inheritance, polymorphism or version counter), without any default of its own."""
    onupdate_keys: frozenset[str]
    """Attribute keys of the columns with an ``onupdate`` or ``server_onupdate``."""
    version_key: str | None
    """Attribute key of the mapper's ``version_id_col`` (optimistic locking), if any."""
    refreshed_keys: frozenset[str]
    """Keys a statement may change without being given them: the `onupdate_keys` and
    the `version_key`. Loaded objects get them expired after a bulk write."""
    python_onupdates: dict[str, Any]
    """The ``ColumnDefault`` of each scalar or callable ``onupdate``, by key."""
    upsert_refresh: dict[str, Any]
    """The SQL each ``upsert_many`` update sets when the rows do not give the column: a
    SQL ``onupdate`` expression, or ``version + 1`` for the `version_key`."""
    delete_by_key: bool
    """Whether one ``DELETE ... WHERE <primary key>`` does all the ORM's delete of an
    unloaded row would: one table, and no relationships (cascades), inheritance,
    polymorphism or version counter."""
    plain_insert: bool
    """Whether an ORM insert adds nothing to a row's values but the Python-side column
    defaults: one table, no inheritance, polymorphic identity or version counter."""
    python_defaults: dict[str, tuple[str, Any]] | None
    """``("scalar", value)`` or ``("callable", fn)`` of each Python-side column default
    (the `rowid_key` left out); None when one of them is a SQL expression."""
    rules: dict[tuple[str, type[Dialect] | None, bool], ValueRule]
    """The value rule of each (attribute key, dialect class, for writes), built on first use."""

    @property
    def model(self) -> type[Any]:
        """The mapped class."""
        return self.mapper.class_

    @property
    def name(self) -> str:
        """The model's class name, for messages."""
        return self.mapper.class_.__name__


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
    meta = _build(found)
    _META[model] = meta
    return meta


def _build(mapper: Mapper[Any]) -> ModelMeta:
    attrs = mapper.column_attrs
    filterable = {prop.key: prop for prop in attrs}
    writable = {
        key: prop
        for key, prop in filterable.items()
        if all(isinstance(col, Column) for col in prop.columns)
    }
    columns = {key: cast("Column[Any]", prop.columns[0]) for key, prop in writable.items()}
    pk_columns = tuple(cast("Column[Any]", col) for col in mapper.primary_key)
    pk = tuple(mapper.get_property_by_column(col).key for col in pk_columns)
    nullable = frozenset(
        key
        for key, prop in filterable.items()
        if not all(isinstance(col, Column) and not col.nullable for col in prop.columns)
    )
    local = mapper.local_table
    table: Table | None = None
    if isinstance(local, Table) and len(mapper.tables) == 1:
        table = cast("Table", local)
    auto_col: Any = getattr(cast(Any, local), "autoincrement_column", None)
    by_column = {col: key for key, col in columns.items()}
    single_auto = table.autoincrement_column if table is not None else None
    rowid_key = _rowid_key(mapper, table, pk_columns)
    onupdate_keys = frozenset(
        key
        for key, col in columns.items()
        if col.onupdate is not None or col.server_onupdate is not None
    )
    version_col: Any = mapper.version_id_col
    version_key = by_column.get(version_col) if version_col is not None else None
    plain = (
        table is not None
        and mapper.inherits is None
        and mapper.polymorphic_on is None
        and version_col is None
    )
    return ModelMeta(
        mapper=mapper,
        attrs=attrs,
        filterable=filterable,
        writable=writable,
        writable_keys=frozenset(writable),
        columns=columns,
        keys_are_column_keys=all(col.key == key for key, col in columns.items()),
        pk=pk,
        pk_columns=pk_columns,
        nullable=nullable,
        python_types={key: _python_type(prop) for key, prop in filterable.items()},
        joins_collections=any(rel.uselist and rel.lazy == "joined" for rel in mapper.relationships),
        relationships=frozenset(mapper.relationships.keys()),
        unique=_unique_keys(mapper, writable, pk),
        table=table,
        autoincrement=by_column.get(auto_col) if auto_col is not None else None,
        generated_pk=tuple(
            key
            for key, col in zip(pk, pk_columns, strict=True)
            if col is single_auto or col.default is not None or col.server_default is not None
        ),
        rowid_key=rowid_key,
        onupdate_keys=onupdate_keys,
        version_key=version_key,
        refreshed_keys=onupdate_keys | {version_key} if version_key else onupdate_keys,
        python_onupdates={
            key: col.onupdate
            for key, col in columns.items()
            if col.onupdate is not None and not getattr(col.onupdate, "is_clause_element", False)
        },
        upsert_refresh=_upsert_refresh(columns, version_key),
        plain_insert=plain,
        python_defaults=_python_defaults(columns, rowid_key),
        delete_by_key=plain and not mapper.relationships,
        rules={},
    )


def _rowid_key(
    mapper: Mapper[Any], table: Table | None, pk_columns: tuple[Column[Any], ...]
) -> Column[Any] | None:
    if (
        table is None
        or mapper.inherits is not None
        or mapper.polymorphic_on is not None
        or mapper.version_id_col is not None
        or len(pk_columns) != 1
    ):
        return None
    key = pk_columns[0]
    if (
        table.autoincrement_column is not key
        or not isinstance(key.type, Integer)
        or key.default is not None
        or key.server_default is not None
    ):
        return None
    return key


def _upsert_refresh(columns: Mapping[str, Column[Any]], version_key: str | None) -> dict[str, Any]:
    refresh: dict[str, Any] = {
        key: col.onupdate.arg  # type: ignore[attr-defined]
        for key, col in columns.items()
        if col.onupdate is not None and getattr(col.onupdate, "is_clause_element", False)
    }
    if version_key is not None:
        refresh[version_key] = columns[version_key] + 1
    return refresh


def _python_defaults(
    columns: Mapping[str, Column[Any]], rowid_key: Column[Any] | None
) -> dict[str, tuple[str, Any]] | None:
    defaults: dict[str, tuple[str, Any]] = {}
    for key, col in columns.items():
        default = col.default
        if default is None or col is rowid_key:
            continue
        if getattr(default, "is_scalar", False):
            defaults[key] = ("scalar", default.arg)  # type: ignore[attr-defined]
        elif getattr(default, "is_callable", False):
            defaults[key] = ("callable", default.arg)  # type: ignore[attr-defined]
        else:
            return None
    return defaults


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
    cache_key = (key, type(dialect) if dialect is not None else None, write)
    rule = meta.rules.get(cache_key)
    if rule is None:
        rule = rule_for_type(meta.filterable[key].columns[0].type, dialect, write=write)
        meta.rules[cache_key] = rule
    return rule


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


def mapped_key(model: type[Any], expression: object) -> str | None:
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
    annotations = column_annotations(expression)
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
