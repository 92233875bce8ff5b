"""`update_many`, `delete_many` and `delete_where`: many rows per statement."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, bindparam, tuple_, update

from ._dialects import Backend, rows_per_statement
from ._filters import identity_of
from ._model import ModelMeta, model_meta
from ._rows import (
    bind_values,
    check_all_rows,
    check_chunk_size,
    check_key_shapes,
    check_unique_rows,
    check_update_rows,
    group_by_keys,
    refuse_unbounded_delete,
    single_table,
)
from ._scoping import ScopeBase
from ._typing import ModelT
from ._where import compile_where

__all__ = ["ChangeMixin"]

_COMPOSITE_IN_ROWS = 1000
"""Keys per ``(a, b) IN ((...), ...)`` statement of `delete_many` for composite keys:
PostgreSQL's parser recurses per tuple and exceeds its stack depth for around 10,000."""


class ChangeMixin(ScopeBase[ModelT]):
    """`update_many`, `delete_many` and `delete_where` of `BulkOperationsMixin`."""

    async def update_many(
        self, rows: Iterable[Mapping[str, Any]], *, chunk_size: int | None = None
    ) -> int:
        """Update many rows by primary key, each with its own values.

        Each row is a mapping (or pydantic model / dataclass) that carries the primary
        key and the columns to write; only the columns a row names are written, so rows
        may name different columns (each set of columns gets its own statement).
        Column ``onupdate`` defaults apply.

        Objects of the model already in the session's identity map are kept in step:
        the values written are set on them as their loaded state, and attributes with
        an ``onupdate`` default are expired.

        Args:
            rows: The rows to write.
            chunk_size: The most rows per statement.

        Returns:
            The number of rows matched (rows whose key does not exist are not counted).

        Raises:
            InvalidFieldError: A row lacks the primary key, sets nothing, repeats the
                primary key of another row, or names an unknown field or a
                relationship; nothing was sent.
            ConflictError: An integrity rule failed.

        Example:
            ```python
            matched = await repo.update_many(
                [{"id": 1, "name": "Ann"}, {"id": 2, "email": "bo@example.com"}]
            )
            ```
        """
        check_chunk_size(self.model, chunk_size)
        meta = model_meta(self.model)
        backend = self._backend()
        rows_values = self._rows(meta, backend, rows, new=False)
        check_update_rows(meta, rows_values)
        # An UPDATE ... FROM applies an arbitrary one of two source rows for the same
        # key, executemany the last one: refuse the ambiguity everywhere.
        check_unique_rows(self.model, rows_values, meta.pk)
        scope = self._active_scope()
        if scope is not None:
            for index, row in enumerate(rows_values):
                scope.keep(row, where=f"row {index}: ")
        if not rows_values:
            return 0
        single_table(meta, "update_many")
        await self.session.flush()
        criteria: tuple[ColumnElement[bool], ...] = ()
        if scope is not None and scope.criteria:
            rows_values = await self._rows_in_scope(meta, backend, scope, rows_values)
            criteria = scope.criteria
        matched = 0
        for keys, indexes in group_by_keys(rows_values).items():
            names = sorted(keys.difference(meta.pk))
            group = [rows_values[i] for i in indexes]
            matched += await self._update_group(meta, backend, names, group, chunk_size, criteria)
        self._sync_identity_map(meta, rows_values, by=meta.pk)
        return matched

    async def _update_group(
        self,
        meta: ModelMeta,
        backend: Backend,
        names: list[str],
        group: list[dict[str, Any]],
        chunk_size: int | None,
        criteria: tuple[ColumnElement[bool], ...],
    ) -> int:
        """``UPDATE ... FROM`` the backend's row sources, or an executemany ``UPDATE``.

        *criteria*: the scope's, which the rows must still match.
        """
        table = single_table(meta, "update_many")
        if not backend.updates_from_rows:
            pk_binds = {key: f"k_{i}" for i, key in enumerate(meta.pk)}
            set_binds = {name: f"v_{i}" for i, name in enumerate(names)}
            statement = (
                update(table)
                .where(
                    *(
                        meta.columns[key] == bindparam(pk_binds[key], type_=meta.columns[key].type)
                        for key in meta.pk
                    ),
                    *criteria,
                )
                .values(
                    {
                        meta.columns[name]: bindparam(
                            set_binds[name], type_=meta.columns[name].type
                        )
                        for name in names
                    }
                )
            )
            binds = {**pk_binds, **set_binds}
            params = [{binds[name]: value for name, value in row.items()} for row in group]
            return await self._execute_in_chunks(backend, statement, params, chunk_size)
        keys = [*meta.pk, *names]
        columns = tuple(meta.columns[name] for name in keys)
        value_rows = bind_values(backend.dialect, columns, keys, group)
        pk_count = len(meta.pk)
        matched = 0
        for source, source_params in backend.row_sources(columns, value_rows, chunk_size):
            statement = (
                update(table)
                .values(
                    {
                        meta.columns[name]: source.c[f"c{pk_count + i}"]
                        for i, name in enumerate(names)
                    }
                )
                .where(
                    *(meta.columns[key] == source.c[f"c{i}"] for i, key in enumerate(meta.pk)),
                    *criteria,
                )
            )
            result = await self._execute(backend, statement, source_params)
            matched += max(0, result.rowcount)
        return matched

    async def delete_many(self, pks: Iterable[Any], *, chunk_size: int | None = None) -> int:
        """Delete the rows with these primary keys.

        A key is a scalar, or a tuple in primary-key column order for a composite key.
        Objects of the model in the session that were deleted are removed from it
        (SQLAlchemy's ``synchronize_session="auto"``). Relationship cascades of the ORM
        do not run: foreign keys with ``ON DELETE`` rules in the database do.

        Args:
            pks: The primary keys; keys that match no row are ignored.
            chunk_size: The most keys per statement (default: the bind-parameter limit).

        Returns:
            The number of rows deleted.

        Raises:
            InvalidFieldError: A composite key of the wrong length, or a key value its
                column's type does not take; nothing was sent.
            ConflictError: A foreign key still references a row.

        Example:
            ```python
            deleted = await repo.delete_many([1, 2, 3])
            ```
        """
        check_chunk_size(self.model, chunk_size)
        meta = model_meta(self.model)
        keys = list(pks)
        check_key_shapes(meta, keys)
        if not keys:
            return 0
        backend = self._backend()
        width = len(meta.pk)
        idents = [identity_of(self.model, key, dialect=backend.dialect) for key in keys]
        keys = [ident[0] for ident in idents] if width == 1 else idents
        per_statement = rows_per_statement(
            backend.max_parameters, width, chunk_size, _COMPOSITE_IN_ROWS if width > 1 else None
        )
        target: Any = (
            getattr(self.model, meta.pk[0])
            if width == 1
            else tuple_(*(getattr(self.model, name) for name in meta.pk))
        )
        deleted = 0
        base = self._delete_statement()
        for start in range(0, len(keys), per_statement):
            statement = base.where(target.in_(keys[start : start + per_statement]))
            result = await self._execute(backend, statement)
            deleted += max(0, result.rowcount)
        return deleted

    async def delete_where(
        self, *where: ColumnElement[bool], all_rows: bool = False, **filters: Any
    ) -> int:
        """Delete every row that matches the filters.

        Takes the same ``*where`` expressions and ``**filters`` lookups as ``list()``.
        Called without any criterion it refuses to run, so that a forgotten filter
        cannot empty the table; pass ``all_rows=True`` to delete every row on purpose.
        Objects of the model in the session that were deleted are removed from it.

        Args:
            *where: SQL boolean expressions.
            all_rows: Allow a call without criteria to delete the whole table.
            **filters: ``field=value`` and ``field__lookup=value`` filters.

        Returns:
            The number of rows deleted.

        Raises:
            InvalidFieldError: No criteria and no ``all_rows=True``, or an unknown field
                or lookup; nothing was sent.
            ConflictError: A foreign key still references a row.

        Example:
            ```python
            await repo.delete_where(created_at__lt=cutoff, status="expired")
            await repo.delete_where(all_rows=True)  # empties the table
            ```
        """
        check_all_rows(self.model, all_rows)
        backend = self._backend()
        criteria = compile_where(self.model, where, filters, dialect=backend.dialect)
        refuse_unbounded_delete(
            self.model,
            has_criteria=bool(criteria),
            all_rows=all_rows,
            fields=model_meta(self.model).writable_keys,
        )
        result = await self._execute(backend, self._delete_statement().where(*criteria))
        return max(0, int(result.rowcount))
