"""`create_many` and `insert_many`: many rows per ``INSERT`` statement."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select

from ._bulk_copy import CopyMixin
from ._dialects import Backend, bind_values, chunk_sizes, rows_per_statement
from ._errors import database_errors
from ._model import ModelMeta, model_meta
from ._rows import (
    check_chunk_size,
    fill_defaults,
    group_by_keys,
)
from ._typing import ModelT

__all__ = ["DEFAULT_CHUNK_SIZE", "InsertMixin"]

DEFAULT_CHUNK_SIZE = 1000
"""Rows per ``INSERT ... RETURNING`` statement of `create_many` unless ``chunk_size`` says
otherwise (SQLAlchemy's own default page size; larger pages measured no faster)."""


class InsertMixin(CopyMixin[ModelT]):
    """`create_many` and `insert_many` of `BulkOperationsMixin`."""

    async def create_many(
        self, rows: Iterable[Any], *, chunk_size: int | None = None
    ) -> list[ModelT]:
        """Insert many rows and return them as persistent objects, in input order.

        Each row is a mapping, a model instance, a pydantic model or a dataclass; only
        mapped column attributes may be set. The returned objects are new instances in
        the session's identity map with their primary keys, Python-side defaults and
        server defaults loaded (the whole row is read back with RETURNING); model
        instances passed in are read as data and stay transient. A ``None`` given for
        a primary-key column the database generates (``{"id": None, ...}``) asks for a
        generated key, as with ``session.add``.

        One ``INSERT ... RETURNING`` per chunk of rows: at most ``chunk_size`` rows
        (default 1000, or as many as the dialect's bind-parameter limit allows on
        SQLite), fewer when the limit demands it. Rows with different sets of keys go
        in separate statements. On SQLite with a database-generated integer key the
        statement assigns the keys itself (largest existing key + position), inside the
        statement, so no other writer can interleave. MySQL, which has no
        ``INSERT ... RETURNING``, goes through the unit of work (one INSERT per row).
        On PostgreSQL, a call of 150 rows or more with asyncpg, 50 with psycopg, over
        plain scalar columns draws its keys from the key's sequence in one statement and
        loads the rows with ``COPY`` in the current transaction (``chunk_size`` does not
        apply); the objects hold the values written.

        Args:
            rows: The rows to insert.
            chunk_size: The most rows per statement.

        Returns:
            The new objects, in the order of *rows*.

        Raises:
            InvalidFieldError: A row names an unknown field, a relationship, or is not a
                mapping / instance / pydantic model / dataclass; nothing was sent.
            ConflictError: An integrity rule failed; the statement left no row behind.

        Example:
            ```python
            users = await repo.create_many(
                [{"email": "a@example.com", "name": "A"}, {"email": "b@example.com", "name": "B"}]
            )
            assert users[0].id is not None
            ```
        """
        check_chunk_size(self.model, chunk_size)
        meta = model_meta(self.model)
        backend = self._backend()
        rows_values = self._scoped_rows(self._rows(meta, backend, rows, new=True))
        if not rows_values:
            return []
        await self.session.flush()
        if backend.assigns_keys(meta):
            return await self._create_by_key(meta, backend, rows_values, chunk_size)
        copied = await self._copy_create(meta, backend, rows_values)
        if copied is not None:
            return copied
        if not backend.dialect.insert_returning:  # pragma: no cover - MySQL: no RETURNING
            # The unit of work reads each generated key from cursor.lastrowid.
            objects = [self.model(**row) for row in rows_values]
            self.session.add_all(objects)
            with database_errors(self.model):
                await self.session.flush(objects)
            return objects
        results: list[Any] = [None] * len(rows_values)
        statement = insert(self.model).returning(self.model, sort_by_parameter_order=True)
        for keys, indexes in group_by_keys(rows_values).items():
            per_statement = rows_per_statement(
                backend.max_parameters, len(keys) + 1, chunk_size, DEFAULT_CHUNK_SIZE
            )
            # One execute per group: insertmanyvalues sends one INSERT per page of
            # per_statement rows and hands the rows back in parameter order.
            result = await self._execute(
                backend,
                statement,
                [rows_values[i] for i in indexes],
                execution_options={
                    "insertmanyvalues_page_size": per_statement,
                    "render_nulls": True,
                },
            )
            for position, obj in zip(indexes, result.scalars().all(), strict=True):
                results[position] = obj
        return results

    async def _create_by_key(
        self,
        meta: ModelMeta,
        backend: Backend,
        rows_values: list[dict[str, Any]],
        chunk_size: int | None,
    ) -> list[ModelT]:
        """`create_many` through the backend's statements that assign the keys themselves.

        Python-side defaults are filled in first; rows are matched to input positions by
        their key value, never by RETURNING order.
        """
        key = meta.rowid_key
        assert key is not None
        assert meta.python_defaults is not None
        key_attr = meta.mapper.get_property_by_column(key).key
        rows_values = list(rows_values)  # filled copies replace rows missing a default
        for keys, indexes in group_by_keys(rows_values).items():
            missing = [name for name in meta.python_defaults if name not in keys]
            filled = fill_defaults(meta, [rows_values[i] for i in indexes], missing)
            for index, row in zip(indexes, filled, strict=True):
                rows_values[index] = row
        results: list[Any] = [None] * len(rows_values)
        for keys, indexes in group_by_keys(rows_values).items():
            generated = key_attr not in keys
            names = sorted(keys)
            columns = [meta.columns[name] for name in names]
            per_statement = rows_per_statement(backend.max_parameters, len(names), chunk_size, None)
            start = 0
            for size in chunk_sizes(len(indexes), per_statement):
                part = indexes[start : start + size]
                start += size
                statement, param_names = backend.create_statement(
                    meta, names, len(part), generated=generated
                )
                value_rows = bind_values(
                    backend.dialect, columns, names, [rows_values[i] for i in part]
                )
                params = dict(
                    zip(param_names, (value for row in value_rows for value in row), strict=True)
                )
                result = await self._execute(
                    backend, select(self.model).from_statement(statement), params
                )
                objs = result.scalars().all()
                if len(objs) != len(part):  # pragma: no cover - defensive
                    raise RuntimeError(f"inserted {len(part)} rows, read back {len(objs)}")
                if generated:
                    objs = sorted(objs, key=lambda obj: getattr(obj, key_attr))
                    first = getattr(objs[0], key_attr)
                    if getattr(objs[-1], key_attr) - first != len(part) - 1:  # pragma: no cover
                        raise RuntimeError("the database assigned non-contiguous keys")
                    for position, obj in zip(part, objs, strict=True):
                        results[position] = obj
                else:
                    by_key = {getattr(obj, key_attr): obj for obj in objs}
                    for position in part:
                        results[position] = by_key[int(rows_values[position][key_attr])]
        return results

    async def insert_many(self, rows: Iterable[Any], *, chunk_size: int | None = None) -> int:
        """Insert many rows without reading them back: the fast path of `create_many`.

        Rows are validated like `create_many`'s. Each chunk is one executemany call of a
        single ``INSERT``; nothing is loaded into the session. On SQLite a chunk is one
        ``INSERT`` with a ``VALUES`` list of all its rows instead. On PostgreSQL, 50 rows or
        more with asyncpg, 20 with psycopg, over plain scalar columns are loaded with one
        ``COPY`` in the current transaction instead (``chunk_size`` does not apply).

        Args:
            rows: Mappings, model instances, pydantic models or dataclasses.
            chunk_size: The most rows per statement (default: the dialect's
                bind-parameter limit divided by the number of columns).

        Returns:
            The number of rows inserted.

        Raises:
            InvalidFieldError: A row names an unknown field or a relationship.
            ConflictError: An integrity rule failed.

        Example:
            ```python
            count = await repo.insert_many({"code": f"c{i}"} for i in range(10_000))
            ```
        """
        check_chunk_size(self.model, chunk_size)
        meta = model_meta(self.model)
        backend = self._backend()
        rows_values = self._scoped_rows(self._rows(meta, backend, rows, new=True))
        if not rows_values:
            return 0
        statement = insert(self.model)
        by_values = backend.insert_values and meta.plain_insert and meta.python_defaults is not None
        if by_values and self.session.autoflush:
            await self.session.flush()  # as the ORM statement's autoflush would
        for keys, indexes in group_by_keys(rows_values).items():
            if await self._copy_group(meta, backend, keys, [rows_values[i] for i in indexes]):
                continue
            if by_values and await self._insert_values(
                meta, backend, keys, [rows_values[i] for i in indexes], chunk_size
            ):
                continue
            per_statement = rows_per_statement(backend.max_parameters, len(keys), chunk_size, None)
            for start in range(0, len(indexes), per_statement):
                part = indexes[start : start + per_statement]
                await self._execute(
                    backend,
                    statement,
                    [rows_values[i] for i in part],
                    execution_options={"render_nulls": True},
                )
        return len(rows_values)

    async def _insert_values(
        self,
        meta: ModelMeta,
        backend: Backend,
        keys: frozenset[str],
        rows: list[dict[str, Any]],
        chunk_size: int | None,
    ) -> bool:
        """*rows* (all giving *keys*) as multi-row ``INSERT ... VALUES`` statements sent
        through the driver, each within the bind-parameter limit; False (nothing sent)
        where the compiled ``INSERT`` has no ``VALUES`` list to repeat."""
        assert meta.table is not None
        if not keys and not meta.python_defaults:
            return False  # no column to give: INSERT ... DEFAULT VALUES
        driver_rows = self._driver_rows(meta, backend, insert(meta.table), ("insert",), keys, rows)
        if driver_rows is None:
            return False
        sql, params = driver_rows
        head, found, values = sql.rpartition(" VALUES ")
        if not (found and values.startswith("(") and values.endswith(")")):  # pragma: no cover
            return False
        width = len(params[0])
        per_statement = rows_per_statement(backend.max_parameters, width, chunk_size, None)
        connection = await self.session.connection()
        for start in range(0, len(params), per_statement):
            part = params[start : start + per_statement]
            statement = f"{head} VALUES {', '.join([values] * len(part))}"
            with database_errors(self.model):
                await connection.exec_driver_sql(
                    statement, tuple([value for row in part for value in row])
                )
        return True
