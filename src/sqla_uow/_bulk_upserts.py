"""`upsert_many`: insert rows or update the rows they collide with, per chunk."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy import exc as sa_exc

from ._dialects import Backend, rows_per_statement
from ._errors import database_errors, is_unmatched_conflict_target
from ._model import ModelMeta, model_meta, unique_key_error
from ._rows import (
    check_chunk_size,
    check_upsert_options,
    check_upsert_rows,
    default_value,
    fill_defaults,
    group_by_keys,
    single_table,
)
from ._scoping import ScopeBase
from ._typing import ModelT

__all__ = ["UpsertMixin"]


class UpsertMixin(ScopeBase[ModelT]):
    """`upsert_many` of `BulkOperationsMixin`."""

    async def upsert_many(
        self,
        rows: Iterable[Any],
        *,
        on_conflict: Sequence[str],
        update: Sequence[str] | None = None,
        chunk_size: int | None = None,
    ) -> int:
        """Insert rows, or update the existing rows they collide with, in one statement per chunk.

        PostgreSQL and SQLite get ``INSERT ... ON CONFLICT (on_conflict) DO UPDATE SET``
        (``DO NOTHING`` for ``update=()``); the conflict columns must carry a unique
        constraint or index. MySQL and MariaDB get ``INSERT ... ON DUPLICATE KEY
        UPDATE``, which fires on *any* unique key of the table; ``on_conflict`` is
        still validated and must be given in every row.

        The update half of the statement also sets the columns SQLAlchemy would set on
        an ORM update but leaves out of ``ON CONFLICT`` / ``ON DUPLICATE KEY`` (their
        ``onupdate``: ``updated_at`` of `sqla_uow.mixins.TimestampMixin`,
        ``updated_by`` of `sqla_uow.mixins.AuditMixin`), and increments the version of
        a versioned model (a row's ``version`` is used only when it is inserted). A
        Python-side ``onupdate`` value travels with the rows, so inserted rows get it
        too (for ``updated_by`` that is what its default gives anyway).

        Objects of the model in the session whose ``on_conflict`` values match a row get
        the updated values set as their loaded state (values the database computed are
        read back).

        Args:
            rows: Mappings, model instances, pydantic models or dataclasses. Every row
                must carry the ``on_conflict`` columns; two rows may not share their
                values.
            on_conflict: The columns whose unique constraint detects an existing row.
            update: The columns to overwrite on conflict. ``None``: every column the row
                gives except the ``on_conflict`` and primary-key columns. ``()``: leave
                the existing row alone.
            chunk_size: The most rows per statement.

        Returns:
            The number of rows inserted or updated. With ``update=()``, PostgreSQL and
            SQLite count only the inserted rows; MySQL / MariaDB report an untouched
            existing row as matched, so there every row counts.

        Raises:
            InvalidFieldError: An ``on_conflict`` or ``update`` name that is not a
                column (or, in ``update``, is the version counter), a row without an
                ``on_conflict`` or ``update`` column, two rows with the same
                ``on_conflict`` values, or a bad row; nothing was sent.
            UnsupportedDialectError: The database has no native upsert SQLAlchemy knows.
            ConflictError: Another integrity rule failed.

        Example:
            ```python
            await products.upsert_many(
                [{"code": "A1", "price": 10}, {"code": "B2", "price": 12}],
                on_conflict=("code",),
            )
            ```
        """
        check_chunk_size(self.model, chunk_size)
        meta = model_meta(self.model)
        conflict, explicit = check_upsert_options(meta, on_conflict, update)
        backend = self._backend()
        scope = self._active_scope()
        rows_values = self._rows(meta, backend, rows, new=True)
        if scope is not None:
            rows_values = scope.filled_rows(rows_values)
        groups = group_by_keys(rows_values)
        check_upsert_rows(meta, rows_values, groups, conflict, explicit)
        backend.check_upsert()
        if not rows_values:
            return 0
        single_table(meta, "upsert_many")
        await self.session.flush()
        guard = None
        if scope is not None and scope.criteria:
            await self._refuse_conflicts_outside(meta, backend, scope, conflict, rows_values)
            guard = and_(*scope.criteria)
        written = 0
        async with self._unmatched_target_translated(meta, backend, conflict):
            for keys, indexes in groups.items():
                if explicit is None:
                    targets = sorted(keys.difference(conflict, meta.pk, {meta.version_key}))
                else:
                    targets = list(explicit)
                group_rows = [rows_values[i] for i in indexes]
                if targets:
                    keys, targets, group_rows = _with_onupdates(meta, keys, targets, group_rows)
                written += await self._upsert_group(
                    meta, backend, keys, conflict, targets, group_rows, chunk_size, guard
                )
                if targets:
                    await self._sync_identity_map(meta, group_rows, by=conflict, written=targets)
        return written

    @contextlib.asynccontextmanager
    async def _unmatched_target_translated(
        self, meta: ModelMeta, backend: Backend, conflict: tuple[str, ...]
    ) -> AsyncGenerator[None, None]:
        """Translate the database's refusal of an ``on_conflict`` no unique key matches.

        When the model declares a unique key over *conflict* (or the database checks no
        conflict target) the block runs as it is. Otherwise the index may exist in the
        database only: the statements are sent, inside a savepoint where a failed
        statement would abort the transaction, and the database's refusal becomes
        `InvalidFieldError` naming the model's unique keys.
        """
        wanted = set(conflict)
        if not backend.checks_conflict_target or any(
            set(keys) == wanted for _, keys in meta.unique
        ):
            yield
            return
        try:
            if backend.conflict_target_savepoint:
                async with self.session.begin_nested():
                    yield
            else:
                yield
        except sa_exc.DBAPIError as exc:
            if is_unmatched_conflict_target(exc):
                raise unique_key_error(self.model, conflict) from exc
            raise

    async def _upsert_group(
        self,
        meta: ModelMeta,
        backend: Backend,
        keys: frozenset[str],
        conflict: tuple[str, ...],
        targets: list[str],
        group_rows: list[dict[str, Any]],
        chunk_size: int | None,
        guard: ColumnElement[bool] | None,
    ) -> int:
        """Upsert rows that give the same *keys*, in the backend's `upsert_form`.

        *guard*: the scope an existing row must be in to be updated.
        """
        if meta.python_defaults is not None and backend.upsert_form == "rows":
            return await self._upsert_from_rows(
                meta, backend, keys, conflict, targets, group_rows, chunk_size, guard
            )
        statement = backend.upsert_statement(meta, conflict, targets, where=guard)
        # Its compiled SQL is kept per shape; a scope's guard binds values of its own.
        if (
            guard is None
            and meta.python_defaults is not None
            and backend.upsert_form == "executemany"
        ):
            return await self._upsert_executemany(
                meta, backend, statement, (conflict, tuple(targets)), keys, group_rows, chunk_size
            )
        group = (
            group_rows
            if meta.keys_are_column_keys
            else [
                {meta.columns[name].key: value for name, value in row.items()} for row in group_rows
            ]
        )
        if backend.upsert_form == "executemany":
            # The driver sums the changes of every execution: inserted plus updated rows.
            return await self._execute_in_chunks(backend, statement, group, chunk_size)
        written = 0
        per_statement = rows_per_statement(backend.max_parameters, len(keys), chunk_size, None)
        for start in range(0, len(group), per_statement):
            part = group[start : start + per_statement]
            if backend.dialect.insert_returning:
                result = await self._execute(
                    backend,
                    statement.returning(*meta.pk_columns),
                    part,
                    execution_options={"insertmanyvalues_page_size": len(part)},
                )
                written += len(result.all())
            else:  # pragma: no cover - MySQL without RETURNING
                result = await self._execute(backend, statement.values(part))
                written += max(0, result.rowcount)
        return written

    async def _upsert_executemany(
        self,
        meta: ModelMeta,
        backend: Backend,
        statement: Any,
        shape: tuple[tuple[str, ...], tuple[str, ...]],
        keys: frozenset[str],
        group_rows: list[dict[str, Any]],
        chunk_size: int | None,
    ) -> int:
        """Executemany of *statement* through the driver, *shape* its conflict and
        target columns (see `BulkBase._driver_rows`)."""
        driver_rows = self._driver_rows(meta, backend, statement, shape, keys, group_rows)
        if driver_rows is None:  # pragma: no cover
            group = [
                {meta.columns[name].key: value for name, value in row.items()} for row in group_rows
            ]
            result = await self._execute(backend, statement, group)
            return max(0, int(result.rowcount))
        sql, params = driver_rows
        connection = await self.session.connection()
        per_statement = chunk_size or len(params)
        written = 0
        for start in range(0, len(params), per_statement):
            with database_errors(self.model):
                result = await connection.exec_driver_sql(
                    sql, params[start : start + per_statement]
                )
            written += max(0, result.rowcount)
        return written

    async def _upsert_from_rows(
        self,
        meta: ModelMeta,
        backend: Backend,
        keys: frozenset[str],
        conflict: tuple[str, ...],
        targets: list[str],
        group_rows: list[dict[str, Any]],
        chunk_size: int | None,
        guard: ColumnElement[bool] | None,
    ) -> int:
        """``INSERT ... SELECT FROM`` the backend's row sources per chunk; an exact count."""
        assert meta.python_defaults is not None
        missing = [name for name in meta.python_defaults if name not in keys]
        names = sorted({*keys, *missing})
        columns = tuple(meta.columns[name] for name in names)
        filled = fill_defaults(meta, group_rows, missing)
        written = 0
        for source, params in backend.row_sources(columns, names, filled, chunk_size):
            rows = select(*(source.c[f"c{j}"] for j in range(len(names))))
            statement = backend.upsert_statement(meta, conflict, targets, (columns, rows), guard)
            result = await self._execute(backend, statement, params)
            written += max(0, result.rowcount)
        return written


def _with_onupdates(
    meta: ModelMeta, keys: frozenset[str], targets: list[str], rows: list[dict[str, Any]]
) -> tuple[frozenset[str], list[str], list[dict[str, Any]]]:
    """*keys*, *targets* and *rows* with the Python-side ``onupdate`` columns added.

    An ORM update would set them; ``ON CONFLICT DO UPDATE`` would not. A row's own
    value wins; inserted rows get the same value.
    """
    added = [key for key in meta.python_onupdates if key not in targets]
    if not added:
        return keys, targets, rows
    missing = [key for key in added if key not in keys]
    if missing:
        rows = [
            {**row, **{key: default_value(meta.python_onupdates[key], row) for key in missing}}
            for row in rows
        ]
    return keys.union(missing), [*targets, *added], rows
