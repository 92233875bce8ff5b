"""`BulkBase`: what every bulk method of the repository shares.

The model's `ModelMeta`, the database's `Backend`, validated rows, statement
execution inside the error boundary, and keeping the session's identity map truthful
after statements that bypass the unit of work.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic

from sqlalchemy import ColumnElement, select, tuple_
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import attributes

from ._dialects import Backend, backend_for, bind_values, rows_per_statement
from ._errors import database_errors
from ._model import ModelMeta
from ._rows import fill_defaults, row_values, without_null_generated_keys
from ._typing import ModelT

__all__ = ["COMPOSITE_IN_ROWS", "BulkBase"]

_COMPILED: dict[tuple[Any, ...], tuple[str, Any]] = {}
"""The SQL and parameter order of `BulkBase._driver_rows`'s statements, by shape."""

COMPOSITE_IN_ROWS = 1000
"""Keys per ``(a, b) IN ((...), ...)`` statement for composite keys: PostgreSQL's
parser recurses per tuple and exceeds its stack depth for around 10,000."""


class BulkBase(Generic[ModelT]):
    """The helpers of the bulk mixins; needs ``model``, ``session`` and ``_meta`` (the
    model's `ModelMeta`), which `AsyncRepository` sets."""

    model: type[ModelT]
    session: AsyncSession
    _meta: ModelMeta

    def _dialect(self) -> Dialect:
        """The dialect of the session's bind for the model."""
        return self.session.get_bind(mapper=self._meta.mapper).dialect

    def _backend(self) -> Backend:
        return backend_for(self._dialect())

    def _rows(
        self, meta: ModelMeta, backend: Backend, rows: Iterable[Any], *, new: bool
    ) -> list[dict[str, Any]]:
        """*rows* validated as dicts (not copied: never mutate them).

        *new*: rows to insert, where ``None`` for a generated key asks for one.
        """
        checked = row_values(meta, rows, dialect=backend.dialect, copy=False)
        return without_null_generated_keys(meta, checked) if new else checked

    async def _execute(
        self,
        backend: Backend,
        statement: Any,
        params: Any = None,
        *,
        execution_options: dict[str, Any] | None = None,
    ) -> Any:
        options = {**backend.bulk_options, **(execution_options or {})}
        with database_errors(self.model):
            return await self.session.execute(statement, params, execution_options=options)

    def _driver_rows(
        self,
        meta: ModelMeta,
        backend: Backend,
        statement: Any,
        shape: tuple[Any, ...],
        keys: frozenset[str],
        rows: list[dict[str, Any]],
    ) -> tuple[str, list[tuple[Any, ...]]] | None:
        """*statement* compiled once, and *rows* as its positional driver values.

        SQLAlchemy's executemany builds a parameter dict per row through the compiled
        statement; where the database work is cheap, that bookkeeping is most of the
        cost. Here the Python-side column defaults the rows lack are filled in and the
        columns' bind processing is applied to tuples in the compiled parameter order.
        The SQL is kept per (*shape*: what else decides the statement; the columns
        given): a later call of the same shape compiles nothing. None when the
        compiled parameters are not the columns (then send the rows through
        SQLAlchemy).
        """
        assert meta.python_defaults is not None
        dialect = backend.dialect
        missing = [name for name in meta.python_defaults if name not in keys]
        names = sorted({*keys, *missing})
        by_column_key = {meta.columns[name].key: name for name in names}
        cache_key = (backend, meta.table, shape, tuple(names))
        found = _COMPILED.get(cache_key)
        if found is None:
            compiled = statement.compile(dialect=dialect, column_keys=list(by_column_key))
            found = (compiled.string, compiled.positiontup)
            if len(_COMPILED) >= 64:
                _COMPILED.clear()
            _COMPILED[cache_key] = found
        sql, order = found
        if order is None or sorted(order) != sorted(by_column_key):  # pragma: no cover
            return None
        ordered = [by_column_key[key] for key in order]
        columns = [meta.columns[name] for name in ordered]
        return sql, bind_values(dialect, columns, ordered, fill_defaults(meta, rows, missing))

    async def _execute_in_chunks(
        self,
        backend: Backend,
        statement: Any,
        params: list[dict[str, Any]],
        chunk_size: int | None,
    ) -> int:
        """Executemany of *statement*, *chunk_size* rows at a time; the rows changed."""
        per_statement = chunk_size or len(params)
        changed = 0
        for start in range(0, len(params), per_statement):
            result = await self._execute(backend, statement, params[start : start + per_statement])
            changed += max(0, result.rowcount)
        return changed

    def _key_criteria(
        self, backend: Backend, columns: Sequence[Any], keys: list[tuple[Any, ...]]
    ) -> Iterator[ColumnElement[bool]]:
        """``columns IN keys``, one criterion per statement-sized chunk of *keys*.

        One column takes the backend's form (one array parameter on PostgreSQL);
        several take ``(a, b) IN (...)`` of at most `COMPOSITE_IN_ROWS` tuples.
        """
        width = len(columns)
        per_statement = rows_per_statement(
            backend.max_parameters, width, None, COMPOSITE_IN_ROWS if width > 1 else None
        )
        for start in range(0, len(keys), per_statement):
            part = keys[start : start + per_statement]
            if width == 1:
                yield backend.in_list(columns[0], [key[0] for key in part])
            else:
                yield tuple_(*columns).in_(part)

    async def _select_by_keys(
        self,
        meta: ModelMeta,
        backend: Backend,
        idents: list[tuple[Any, ...]],
        columns: Sequence[Any],
        *,
        for_update: bool = False,
        where: Sequence[ColumnElement[bool]] = (),
    ) -> list[Any]:
        """Rows of (primary key..., *columns*) of the rows with primary keys *idents*
        that also match *where*."""
        pk_columns = [meta.columns[key] for key in meta.pk]
        found: list[Any] = []
        for criterion in self._key_criteria(backend, pk_columns, idents):
            statement = select(*pk_columns, *columns).where(criterion, *where)
            if for_update:
                statement = statement.with_for_update()
            found.extend((await self._execute(backend, statement)).all())
        return found

    async def _sync_identity_map(
        self,
        meta: ModelMeta,
        rows: list[dict[str, Any]],
        *,
        by: Sequence[str],
        written: Iterable[str] | None = None,
    ) -> None:
        """Set the written values on matching objects of the identity map.

        Objects are matched on the *by* attributes (read from their loaded state, never
        loaded); *written* limits the attributes set (default: every non-*by* key of the
        row). Attributes with an ``onupdate`` default, and a version counter, are read
        back from the database (`_read_back`) unless the row wrote them.
        """
        identity_map = self.session.sync_session.identity_map
        if not len(identity_map):
            return
        computed: dict[tuple[Any, ...], tuple[Any, list[str]]] = {}
        rows_by: dict[tuple[Any, ...], dict[str, Any]] = {}
        for values_ in rows:
            try:
                rows_by[tuple(values_[name] for name in by)] = values_
            except (KeyError, TypeError):
                continue
        only = None if written is None else frozenset(written)
        for obj in list(identity_map.values()):
            if not isinstance(obj, self.model):
                continue
            loaded = attributes.instance_state(obj).dict
            try:
                row = rows_by.get(tuple(loaded[name] for name in by))
            except (KeyError, TypeError):
                continue
            if row is None:
                continue
            for name, value in row.items():
                if name not in by and (only is None or name in only):
                    attributes.set_committed_value(obj, name, value)
            stale = [
                name
                for name in meta.refreshed_keys
                if name not in row or (only is not None and name not in only)
            ]
            if stale:
                computed[tuple(loaded[name] for name in meta.pk)] = (obj, stale)
        if computed:
            await self._read_back(meta, computed)

    async def _read_back(
        self, meta: ModelMeta, objects: dict[tuple[Any, ...], tuple[Any, list[str]]]
    ) -> None:
        """Load the values the database computed (``onupdate``, versions) into *objects*.

        One SELECT per chunk of keys, instead of expiring the attributes: reading an
        expired attribute would lazy-load, which fails in async code.
        """
        names = sorted({name for _, stale in objects.values() for name in stale})
        width = len(meta.pk)
        rows = await self._select_by_keys(
            meta, self._backend(), list(objects), [meta.columns[name] for name in names]
        )
        for row in rows:
            obj, stale = objects[tuple(row[:width])]
            for i, name in enumerate(names):
                if name in stale:
                    attributes.set_committed_value(obj, name, row[width + i])
