"""`update_many`, `delete_many` and `delete_where`: many rows per statement."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, bindparam, tuple_, update

from ._bulk_base import COMPOSITE_IN_ROWS
from ._dialects import Backend, rows_per_statement
from ._errors import stale_error
from ._filters import identity_of, single_key_values
from ._model import ModelMeta, model_meta
from ._rows import (
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
        the values written are set on them as their loaded state, and the values the
        database computed (``onupdate`` columns, versions) are read back into them
        with one SELECT.

        On a versioned model (`sqla_uow.mixins.VersionedMixin`) every row written gets
        its version incremented. A row that gives ``version`` is written only at that
        version: the rows that give one are first read ``FOR UPDATE`` (SQLite has one
        writer at a time instead), and if any of them is at another version, nothing
        is written and `ConflictError` (``kind="stale"``) names their keys.

        Args:
            rows: The rows to write.
            chunk_size: The most rows per statement.

        Returns:
            The number of rows matched (rows whose key does not exist are not counted).

        Raises:
            InvalidFieldError: A row lacks the primary key, sets nothing, repeats the
                primary key of another row, or names an unknown field or a
                relationship; nothing was sent.
            ConflictError: An integrity rule failed; ``kind="stale"``: a row's version
                is not the one it gives.

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
        groups = group_by_keys(rows_values)
        check_update_rows(meta, groups)
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
            groups = group_by_keys(rows_values)
            criteria = scope.criteria
        vkey = meta.version_key
        current = await self._check_versions(meta, backend, rows_values)
        matched = at_version = 0
        for keys, indexes in groups.items():
            names = sorted(keys.difference(meta.pk))
            match = meta.pk
            if vkey is not None and vkey in keys:
                names.remove(vkey)
                match = (*meta.pk, vkey)
            group = [rows_values[i] for i in indexes]
            written = await self._update_group(
                meta, backend, match, names, group, chunk_size, criteria
            )
            matched += written
            at_version += written if len(match) > len(meta.pk) else 0
        if at_version < current:  # a row changed between the check and the UPDATE
            raise stale_error(self.model)
        if vkey is not None:  # the version written, where the row gave the one it read
            rows_values = [
                {**row, vkey: row[vkey] + 1} if vkey in row else row for row in rows_values
            ]
        await self._sync_identity_map(meta, rows_values, by=meta.pk)
        return matched

    async def _check_versions(
        self, meta: ModelMeta, backend: Backend, rows: list[dict[str, Any]]
    ) -> int:
        """Lock the rows that give a version; raise if one is at another version.

        Returns how many of them exist (the rows the versioned UPDATEs must match).
        """
        vkey = meta.version_key
        expected = {
            tuple(row[key] for key in meta.pk): row[vkey]
            for row in rows
            if vkey is not None and vkey in row
        }
        if vkey is None or not expected:
            return 0
        width = len(meta.pk)
        current = await self._select_by_keys(
            meta, backend, list(expected), [meta.columns[vkey]], for_update=True
        )
        found = {tuple(row[:width]): row[width] for row in current}
        stale = [
            ident
            for ident, version in found.items()
            if expected.get(ident, version) != version  # a key of another type: the UPDATE checks
        ]
        if stale:
            raise stale_error(self.model, stale)
        return len(found)

    async def _update_group(
        self,
        meta: ModelMeta,
        backend: Backend,
        match: tuple[str, ...],
        names: list[str],
        group: list[dict[str, Any]],
        chunk_size: int | None,
        criteria: tuple[ColumnElement[bool], ...],
    ) -> int:
        """``UPDATE ... FROM`` the backend's row sources, or an executemany ``UPDATE``.

        Rows are matched on the *match* keys (the primary key, and the version where
        the rows give it); a versioned model's version is incremented. *criteria* are
        the scope's, which the rows must still match.
        """
        table = single_table(meta, "update_many")
        bump = meta.upsert_refresh[meta.version_key] if meta.version_key is not None else None
        if not backend.updates_from_rows:
            pk_binds = {key: f"k_{i}" for i, key in enumerate(match)}
            set_binds = {name: f"v_{i}" for i, name in enumerate(names)}
            sets: dict[Any, Any] = {
                meta.columns[name]: bindparam(set_binds[name], type_=meta.columns[name].type)
                for name in names
            }
            if bump is not None:
                sets[meta.columns[meta.version_key]] = bump  # type: ignore[index]
            statement = (
                update(table)
                .where(
                    *(
                        meta.columns[key] == bindparam(pk_binds[key], type_=meta.columns[key].type)
                        for key in match
                    ),
                    *criteria,
                )
                .values(sets)
            )
            binds = {**pk_binds, **set_binds}
            params = [{binds[name]: value for name, value in row.items()} for row in group]
            return await self._execute_in_chunks(backend, statement, params, chunk_size)
        keys = [*match, *names]
        columns = tuple(meta.columns[name] for name in keys)
        pk_count = len(match)
        matched = 0
        for source, source_params in backend.row_sources(columns, keys, group, chunk_size):
            sets = {
                meta.columns[name]: source.c[f"c{pk_count + i}"] for i, name in enumerate(names)
            }
            if bump is not None:
                sets[meta.columns[meta.version_key]] = bump  # type: ignore[index]
            statement = (
                update(table)
                .values(sets)
                .where(
                    *(meta.columns[key] == source.c[f"c{i}"] for i, key in enumerate(match)),
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
        if width == 1:
            keys = single_key_values(self.model, keys, dialect=backend.dialect)
        else:
            keys = [identity_of(self.model, key, dialect=backend.dialect) for key in keys]
        per_statement = rows_per_statement(
            backend.max_parameters, width, chunk_size, COMPOSITE_IN_ROWS if width > 1 else None
        )
        # With no object of the model in the session there is nothing to keep in step:
        # the keys go in the backend's one-parameter form where it has one (PostgreSQL's
        # = ANY(array)) and SQLAlchemy does not evaluate the criteria against objects.
        unloaded = width == 1 and not self._any_loaded()
        execution_options = {"synchronize_session": False} if unloaded else None
        target: Any = (
            getattr(self.model, meta.pk[0])
            if width == 1
            else tuple_(*(getattr(self.model, name) for name in meta.pk))
        )
        deleted = 0
        base = self._delete_statement()
        for start in range(0, len(keys), per_statement):
            chunk = keys[start : start + per_statement]
            criterion = backend.in_list(target, chunk) if unloaded else target.in_(chunk)
            result = await self._execute(
                backend, base.where(criterion), execution_options=execution_options
            )
            deleted += max(0, result.rowcount)
        return deleted

    def _any_loaded(self) -> bool:
        """Whether the session's identity map holds an object of the model."""
        model = self.model
        return any(
            isinstance(obj, model) for obj in self.session.sync_session.identity_map.values()
        )

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
