"""`FakeStore`: the rows of an `InMemoryRepository` and the rules a database enforces on them.

Inserts and updates are atomic (all rows or none), check NOT NULL and every unique
key the model declares, fill in Python-side defaults and integer keys, and a snapshot
lets a `FakeUnitOfWork` roll them back.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic

from sqla_uow._errors import stale_error
from sqla_uow._filters import (
    as_values,
    check_assignable,
    check_write_values,
    identity_of,
    is_own_instance,
)
from sqla_uow._model import ModelMeta
from sqla_uow._rows import default_value, is_clock
from sqla_uow._scoping import ActiveScope, ScopeLayer, compile_scope
from sqla_uow._soft_delete import deleted_now, is_soft_delete
from sqla_uow._typing import ModelT
from sqla_uow.exceptions import ConflictError

from ._expressions import compile_order, compile_predicate, sort_instances

__all__ = ["FakeScope", "FakeStore", "FakeTable", "Snapshot"]

Snapshot = dict[tuple[Any, ...], tuple[Any, dict[str, Any]]]
"""The stored instances by identity, each with its column values at the time."""


class FakeTable:
    """The stored rows, shared by a repository and its scoped views."""

    def __init__(self) -> None:
        self.rows: dict[tuple[Any, ...], Any] = {}
        self.next_id = 1
        self.unit_of_work: Any = None


class FakeScope:
    """A fake repository's scope for one operation: the compiled scope and its test."""

    def __init__(self, scope: ActiveScope, inside: Callable[[Any], bool]) -> None:
        self.scope = scope
        self.inside = inside


class FakeStore(Generic[ModelT]):
    """The storage under `InMemoryRepository`: instances by primary key, kept valid."""

    model: type[ModelT]
    _info: ModelMeta
    _table: FakeTable
    _scope_layers: tuple[ScopeLayer, ...] = ()
    _include_deleted: bool = False

    @property
    def _rows(self) -> dict[tuple[Any, ...], ModelT]:
        return self._table.rows

    @_rows.setter
    def _rows(self, rows: dict[tuple[Any, ...], ModelT]) -> None:
        self._table.rows = rows

    @property
    def _next_id(self) -> int:
        return self._table.next_id

    @_next_id.setter
    def _next_id(self, value: int) -> None:
        self._table.next_id = value

    @property
    def _unit_of_work(self) -> Any:
        """The FakeUnitOfWork whose block holds this repository, if any."""
        return self._table.unit_of_work

    @_unit_of_work.setter
    def _unit_of_work(self, value: Any) -> None:
        self._table.unit_of_work = value

    def default_scope(self) -> Mapping[str, Any] | None:
        """Criteria every operation is confined to, as `AsyncRepository.default_scope`.

        Example:
            ```python
            class FakeShopOrders(InMemoryRepository[ShopOrder]):
                def default_scope(self) -> Mapping[str, Any] | None:
                    return {"shop_id": current_shop.get()}
            ```
        """
        return None

    def _fake_scope(self) -> FakeScope | None:
        """The scope of this operation (layers, default scope, soft delete), if any."""
        layers = self._scope_layers
        default = self.default_scope()
        if default:
            layers = (ScopeLayer((), dict(default)), *layers)
        live = is_soft_delete(self.model) and not self._include_deleted
        if not layers and not live:
            return None
        scope = compile_scope(
            self.model, layers, dialect=None, include_deleted=self._include_deleted
        )
        tests = [compile_predicate(self._info, layer.where, layer.filters) for layer in layers]

        def inside(obj: Any) -> bool:
            if live and obj.__dict__.get("deleted_at") is not None:
                return False
            return all(test(obj) for test in tests)

        return FakeScope(scope, inside)

    def _key_of(self, pk_or_instance: Any) -> tuple[Any, ...]:
        if self._is_own_instance(pk_or_instance):
            return self._identity_of(pk_or_instance)
        return self._identity(pk_or_instance)

    def _fake_delete(self, identities: Iterable[tuple[Any, ...]]) -> int:
        """Delete (or soft-delete) the rows in the scope under *identities*; how many."""
        scope = self._fake_scope()
        soft = is_soft_delete(self.model)
        found = [self._visible(identity, scope) for identity in dict.fromkeys(identities)]
        doomed = [obj for obj in found if obj is not None]
        if soft:
            doomed = [obj for obj in doomed if obj.__dict__.get("deleted_at") is None]
            now = deleted_now()
            self._update([(obj, {"deleted_at": now}) for obj in doomed])
        else:
            for obj in doomed:
                del self._rows[self._identity_of(obj)]
        return len(doomed)

    def _visible(self, identity: tuple[Any, ...], scope: FakeScope | None) -> ModelT | None:
        """The stored instance under *identity* when it is in *scope*."""
        obj = self._rows.get(identity)
        if obj is None or scope is None or scope.inside(obj):
            return obj
        return None

    def _values_of(self, obj: Any) -> dict[str, Any]:
        return {key: obj.__dict__.get(key) for key in self._info.columns}

    def _identity_of(self, obj: Any) -> tuple[Any, ...]:
        return tuple(obj.__dict__.get(key) for key in self._info.pk)

    def _identity(self, pk: Any) -> tuple[Any, ...]:
        """Normalise and check a primary key as `AsyncRepository` does.

        A key given in a form the column's type converts exactly (``"1"`` for ``1``)
        finds the row, as it does in the database.
        """
        return identity_of(self.model, pk)

    def _is_own_instance(self, obj: Any) -> bool:
        return is_own_instance(self.model, obj, owner=type(self).__name__)

    def _instance(self, data: Any, values: Mapping[str, Any]) -> ModelT:
        """A new instance from *data* and *values*, or *data* itself if it is an instance."""
        if self._is_own_instance(data):
            check_assignable(self.model, values)
            obj: ModelT = data
            for key, value in values.items():
                setattr(obj, key, value)
            given = as_values(obj, {})
            for key, value in check_write_values(self.model, given, dialect=None).items():
                if value is not given[key]:
                    setattr(obj, key, value)
            return obj
        fields = as_values(data, values, exclude_unset=True)  # as AsyncRepository.create
        check_assignable(self.model, fields)
        fields = check_write_values(self.model, fields, dialect=None)
        new: ModelT = self.model(**fields)
        return new

    def _conflict(self, kind: str, constraint: str | None, keys: Sequence[str]) -> ConflictError:
        """The error a database would raise; like a database error, it dooms the unit of work."""
        columns = tuple(self._info.columns[key].name for key in keys)
        detail = [f"constraint {constraint!r}"] if constraint else []
        detail.append("columns " + ", ".join(columns))
        error = ConflictError(
            f"{kind.replace('_', '-')} violation writing {self._info.name} ({'; '.join(detail)})",
            kind="unique" if kind == "unique" else "not_null",
            model=self.model,
            constraint=constraint,
            columns=columns,
        )
        if self._unit_of_work is not None:
            self._unit_of_work._mark_rollback_only(error)
        return error

    def _check_not_null(self, values: Mapping[str, Any]) -> None:
        for key, column in self._info.columns.items():
            if values.get(key) is not None or column.nullable:
                continue
            if column.server_default is not None or key == self._info.autoincrement:
                continue
            raise self._conflict("not_null", None, (key,))

    def _fake_check_unique(self, changed: Sequence[tuple[Any, dict[str, Any]]]) -> None:
        """Raise ConflictError if the new states *changed* break a unique rule.

        Stored objects not in *changed* keep their current values.
        """
        ids = {id(obj) for obj, _ in changed}
        states = [self._values_of(obj) for obj in self._rows.values() if id(obj) not in ids]
        states.extend(values for _, values in changed)
        for constraint, keys in self._info.unique:
            seen: set[tuple[Any, ...]] = set()
            for values in states:
                key = tuple(values.get(k) for k in keys)
                if any(part is None for part in key):
                    continue
                if key in seen:
                    raise self._conflict("unique", constraint, keys)
                seen.add(key)

    def _insert(self, objs: Sequence[ModelT]) -> None:
        """Store new instances atomically: all of them or, on a conflict, none."""
        auto = self._info.autoincrement
        next_id = self._next_id
        staged: builtins.list[tuple[Any, dict[str, Any]]] = []
        now = dt.datetime.now(dt.timezone.utc)  # the database clock of TimestampMixin
        for obj in objs:
            values = self._values_of(obj)
            for key, column in self._info.columns.items():
                if values[key] is None and column.default is not None:
                    values[key] = default_value(column.default, values)
                elif values[key] is None and is_clock(column.server_default):
                    values[key] = now
            if auto is not None:
                if values[auto] is None:
                    values[auto] = next_id
                    next_id += 1
                elif isinstance(values[auto], int) and values[auto] >= next_id:
                    next_id = values[auto] + 1
            self._check_not_null(values)
            staged.append((obj, values))
        self._fake_check_unique(staged)
        self._next_id = next_id
        for obj, values in staged:
            self._assign(obj, values)
            self._rows[self._identity_of(obj)] = obj

    @staticmethod
    def _assign(obj: Any, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            if obj.__dict__.get(key, None) is not value or key not in obj.__dict__:
                setattr(obj, key, value)

    def _update(self, updates: Sequence[tuple[ModelT, Mapping[str, Any]]]) -> None:
        """Assign values to stored instances atomically (primary keys never change).

        ``onupdate`` values apply (Python-side ones and the UTC clock). A versioned
        row's version is incremented; a version among the *values* is the one the
        row must be at (`ConflictError`, ``kind="stale"``, otherwise).
        """
        staged: builtins.list[tuple[Any, dict[str, Any]]] = []
        vkey = self._info.version_key
        now = dt.datetime.now(dt.timezone.utc)
        for obj, values in updates:
            new = self._values_of(obj)
            if vkey is not None:
                if vkey in values and values[vkey] != new[vkey]:
                    raise stale_error(self.model, [self._identity_of(obj)])
                values = {**values, vkey: new[vkey] + 1}
            new.update(values)
            for key, column in self._info.columns.items():
                onupdate = column.onupdate
                if onupdate is None or key in values:
                    continue
                if is_clock(onupdate):
                    new[key] = now
                elif not getattr(onupdate, "is_clause_element", False):
                    new[key] = default_value(onupdate, new)
            self._check_not_null(new)
            staged.append((obj, new))
        self._fake_check_unique(staged)
        for obj, new in staged:
            self._assign(obj, new)

    def _ordered(self) -> builtins.list[ModelT]:
        return sort_instances(self._rows.values(), [(key, False) for key in self._info.pk])

    def _fake_select(
        self, where: Sequence[Any], filters: Mapping[str, Any], order_by: Any = None
    ) -> builtins.list[ModelT]:
        predicate = compile_predicate(self._info, where, filters)
        order = compile_order(self._info, order_by)
        scope = self._fake_scope()
        found = [
            obj
            for obj in self._ordered()
            if predicate(obj) and (scope is None or scope.inside(obj))
        ]
        return sort_instances(found, order) if order else found

    def _snapshot(self) -> Snapshot:
        return {identity: (obj, self._values_of(obj)) for identity, obj in self._rows.items()}

    def _restore(self, snapshot: Snapshot) -> None:
        self._rows = {}
        for identity, (obj, values) in snapshot.items():
            self._assign(obj, values)
            self._rows[identity] = obj

    def _in_order(
        self,
        writes: Sequence[tuple[tuple[ModelT, Mapping[str, Any]] | None, ModelT | None]],
    ) -> None:
        """Apply updates and inserts one row at a time, all or nothing.

        A database checks unique constraints row by row, in the order of the rows (on
        SQLite, PostgreSQL and MariaDB alike): two rows that swap unique values fail
        even though the final state would be valid.
        """
        snapshot = self._snapshot()
        try:
            for update, insert in writes:
                if update is not None:
                    self._update([update])
                if insert is not None:
                    self._insert([insert])
        except BaseException:
            self._restore(snapshot)
            raise
