"""The bulk methods of `InMemoryRepository`: all rows checked first, then all or none stored."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqla_uow._errors import stale_error
from sqla_uow._model import unique_key_error
from sqla_uow._rows import (
    check_all_rows,
    check_chunk_size,
    check_key_shapes,
    check_unique_rows,
    check_update_rows,
    check_upsert_options,
    check_upsert_rows,
    group_by_keys,
    refuse_unbounded_delete,
    row_values,
)
from sqla_uow._typing import ModelT
from sqla_uow.exceptions import ConflictError

from ._store import FakeStore

__all__ = ["FakeBulkMixin"]


class FakeBulkMixin(FakeStore[ModelT]):
    """`create_many`, `insert_many`, `update_many`, `delete_many`, `delete_where` and
    `upsert_many` of `InMemoryRepository`, with the real repository's row checks."""

    async def create_many(
        self, rows: Iterable[Any], *, chunk_size: int | None = None
    ) -> builtins.list[ModelT]:
        """Store several new instances, all or none; returned in input order.

        As with `AsyncRepository.create_many`, model instances passed in are read as data:
        the returned instances are new ones.

        Raises:
            InvalidFieldError: A row names an unknown field, or is not a mapping,
                instance, pydantic model or dataclass; nothing was stored.
            ConflictError: A duplicate key or unique value; nothing was stored.

        Example:
            ```python
            created = await users.create_many([{"email": "a@x.org", "name": "A"}])
            ```
        """
        check_chunk_size(self.model, chunk_size)
        rows_values = row_values(self._info, rows, dialect=None)
        scope = self._fake_scope()
        if scope is not None:
            rows_values = scope.scope.filled_rows(rows_values)
        objs = [self.model(**values) for values in rows_values]
        self._insert(objs)
        return objs

    async def insert_many(self, rows: Iterable[Any], *, chunk_size: int | None = None) -> int:
        """Store several new rows without returning them; the number stored.

        Example:
            ```python
            assert await users.insert_many([{"email": "a@x.org", "name": "A"}]) == 1
            ```
        """
        return len(await self.create_many(rows, chunk_size=chunk_size))

    async def update_many(
        self, rows: Iterable[Mapping[str, Any]], *, chunk_size: int | None = None
    ) -> int:
        """Update stored rows by primary key, each with its own values; the number matched.

        Raises:
            InvalidFieldError: A row lacks the primary key, sets nothing else, or names
                an unknown field; nothing was changed.
            ConflictError: The new values break a unique rule, or (``kind="stale"``) a
                row's version is not the stored one; nothing was changed.

        Example:
            ```python
            await users.update_many([{"id": 1, "name": "A"}, {"id": 2, "name": "B"}])
            ```
        """
        check_chunk_size(self.model, chunk_size)
        pk = self._info.pk
        rows_values = row_values(self._info, rows, dialect=None)
        check_update_rows(self._info, group_by_keys(rows_values))
        check_unique_rows(self.model, rows_values, pk)
        scope = self._fake_scope()
        if scope is not None:
            for index, row in enumerate(rows_values):
                scope.scope.keep(row, where=f"row {index}: ")
        updates: builtins.list[tuple[ModelT, Mapping[str, Any]]] = []
        for row in rows_values:
            obj = self._visible(tuple(row[name] for name in pk), scope)
            if obj is not None:
                updates.append((obj, {k: v for k, v in row.items() if k not in pk}))
        vkey = self._info.version_key
        stale = [
            self._identity_of(obj)
            for obj, values in updates
            if vkey is not None and vkey in values and values[vkey] != obj.__dict__.get(vkey)
        ]
        if stale:
            raise stale_error(self.model, stale)
        self._in_order([(update, None) for update in updates])
        return len(updates)

    async def delete_many(self, pks: Iterable[Any], *, chunk_size: int | None = None) -> int:
        """Remove the instances with these primary keys; the number removed.

        Raises:
            InvalidFieldError: A composite key of the wrong shape; nothing was removed.

        Example:
            ```python
            assert await users.delete_many([1, 2]) == 2
            ```
        """
        check_chunk_size(self.model, chunk_size)
        keys = builtins.list(pks)
        check_key_shapes(self._info, keys)
        identities = [
            self._identity(key if len(self._info.pk) == 1 else tuple(key)) for key in keys
        ]
        return self._fake_delete(identities)

    async def delete_where(self, *where: Any, all_rows: bool = False, **filters: Any) -> int:
        """Remove every instance matching the criteria; the number removed.

        Without any criterion it refuses, unless ``all_rows=True``.

        Raises:
            InvalidFieldError: No criteria and no ``all_rows=True``, or an unknown field
                or lookup.

        Example:
            ```python
            await users.delete_where(name__like="test%")
            ```
        """
        check_all_rows(self.model, all_rows)
        doomed = self._fake_select(where, filters)
        refuse_unbounded_delete(
            self.model,
            has_criteria=bool(where or filters),
            all_rows=all_rows,
            fields=self._info.columns,
        )
        return self._fake_delete(self._identity_of(obj) for obj in doomed)

    async def upsert_many(
        self,
        rows: Iterable[Any],
        *,
        on_conflict: Sequence[str],
        update: Sequence[str] | None = None,
        chunk_size: int | None = None,
    ) -> int:
        """Insert rows, or update the stored row with the same *on_conflict* values.

        ``update=None`` overwrites every column a row gives except the conflict and
        primary-key columns; ``update=()`` leaves existing rows alone. Returns the
        number of rows inserted or updated (as on PostgreSQL and SQLite). Unlike a
        database, the fake also requires *on_conflict* to be the primary key or a
        unique constraint or index of the table, and says so with `InvalidFieldError`.

        Raises:
            InvalidFieldError: A bad ``on_conflict`` or ``update`` name, a row without
                them, or two rows with the same ``on_conflict`` values.
            ConflictError: Another unique rule failed; nothing was changed.

        Example:
            ```python
            await codes.upsert_many([{"code": "A", "label": "a"}], on_conflict=("code",))
            ```
        """
        check_chunk_size(self.model, chunk_size)
        conflict, explicit = check_upsert_options(self._info, on_conflict, update)
        rows_values = row_values(self._info, rows, dialect=None)
        scope = self._fake_scope()
        if scope is not None:
            rows_values = scope.scope.filled_rows(rows_values)
        check_upsert_rows(self._info, rows_values, group_by_keys(rows_values), conflict, explicit)
        if not any(set(keys) == set(conflict) for _, keys in self._info.unique):
            raise unique_key_error(self.model, conflict)
        existing = {
            tuple(obj.__dict__.get(name) for name in conflict): obj for obj in self._rows.values()
        }
        writes: builtins.list[tuple[tuple[ModelT, Mapping[str, Any]] | None, ModelT | None]] = []
        for row in rows_values:
            target = existing.get(tuple(row[name] for name in conflict))
            if target is not None and scope is not None and not scope.inside(target):
                raise ConflictError(
                    f"unique violation writing {self.model.__name__}: a row of upsert_many "
                    f"collides on ({', '.join(conflict)}) with a row outside the "
                    "repository's scope; nothing was written",
                    kind="unique",
                    model=self.model,
                    columns=[self._info.columns[name].name for name in conflict],
                )
            if target is None:
                writes.append((None, self.model(**row)))
                continue
            if explicit is None:
                skip = {*conflict, *self._info.pk, self._info.version_key}
                names = [k for k in row if k not in skip]
            else:
                names = builtins.list(explicit)
            if names:
                writes.append(((target, {name: row[name] for name in names}), None))
        self._in_order(writes)
        return len(writes)
