"""The PostgreSQL backend."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    Insert,
    Integer,
    Interval,
    Numeric,
    String,
    Time,
    Uuid,
    bindparam,
    cast,
    column,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.schema import Column
from sqlalchemy.sql import FromClause, Select

from sqla_uow._rows import rows_per_statement

from ._base import Backend
from ._values import shaped_values

if TYPE_CHECKING:
    from sqla_uow._model import ModelMeta

__all__ = ["PostgreSQLBackend"]


class PostgreSQLBackend(Backend):
    """PostgreSQL."""

    name: ClassVar[str] = "PostgreSQL"

    # -- transactions -----------------------------------------------------------------
    # (transaction behaviour goes here)

    # -- statements -------------------------------------------------------------------
    # update_many: UPDATE ... FROM a row source (asyncpg reports no row count for an
    # executemany); upsert_many: INSERT ... SELECT FROM a row source ON CONFLICT, whose
    # row count is exact. An ON CONFLICT target without a unique index aborts the
    # transaction, hence the savepoint.

    upsert_form: ClassVar[str | None] = "rows"
    updates_from_rows: ClassVar[bool] = True
    checks_conflict_target: ClassVar[bool] = True
    conflict_target_savepoint: ClassVar[bool] = True

    _UNNEST_TYPES: ClassVar[tuple[type[Any], ...]] = (
        Integer, String, Boolean, Float, Numeric, Date, DateTime, Time, Interval, Uuid,
    )  # fmt: skip
    _unnest_sources: ClassVar[dict[tuple[str, ...], FromClause]] = {}
    _values_sources: ClassVar[dict[tuple[str, ...], tuple[FromClause, tuple[str, ...]]]] = {}

    def row_sources(
        self,
        columns: Sequence[Column[Any]],
        value_rows: list[tuple[Any, ...]],
        chunk_size: int | None,
    ) -> Iterator[tuple[FromClause, dict[str, Any]]]:
        """Columns of plain scalar types travel as one array per column.

        ``unnest(CAST(:a0 AS type[]), ...) AS v(c0, ...)``: a statement of a fixed
        shape, prepared once, whatever the number of rows. Other types (JSON, enums,
        custom types with bind processing) go through a ``VALUES`` list, chunked by
        the bind-parameter limit.
        """
        dialect = self.dialect
        if all(
            isinstance(col.type, self._UNNEST_TYPES)
            and col.type.dialect_impl(dialect).bind_processor(dialect) is None
            for col in columns
        ):
            source = self._unnest_source(columns)
            per_statement = chunk_size or len(value_rows)
            for start in range(0, len(value_rows), per_statement):
                part = value_rows[start : start + per_statement]
                yield source, {f"a{j}": list(col) for j, col in enumerate(zip(*part, strict=True))}
            return
        width = len(columns)
        per_statement = rows_per_statement(self.max_parameters, width, chunk_size, None)
        for start in range(0, len(value_rows), per_statement):
            part = value_rows[start : start + per_statement]
            source, names = self._values_source(columns, len(part))
            flat = [value for row in part for value in row]
            yield source, dict(zip(names, flat, strict=True))

    def _casts(self, columns: Sequence[Column[Any]]) -> tuple[str, ...]:
        return tuple(str(col.type.compile(dialect=self.dialect)) for col in columns)

    def _unnest_source(self, columns: Sequence[Column[Any]]) -> FromClause:
        """``(SELECT v0.c0, ... FROM unnest(CAST(:a0 AS type[]), ...) AS v0(c0, ...)) AS v``."""
        cache_key = self._casts(columns)
        source = self._unnest_sources.get(cache_key)
        if source is None:
            arrays = [cast(bindparam(f"a{j}"), ARRAY(col.type)) for j, col in enumerate(columns)]
            rows = (
                func.unnest(*arrays)
                .table_valued(*(column(f"c{j}", col.type) for j, col in enumerate(columns)))
                .render_derived(name="v0")
            )
            source = select(*rows.c).subquery("v")
            if len(self._unnest_sources) >= 64:
                self._unnest_sources.clear()
            self._unnest_sources[cache_key] = source
        return source

    def _values_source(
        self, columns: Sequence[Column[Any]], count: int
    ) -> tuple[FromClause, tuple[str, ...]]:
        """``(SELECT v0.c0, ... FROM (VALUES ...) AS v0 (c0, ...)) AS v`` of *count* rows.

        Cached per shape (see `shaped_values`).
        The first row casts each bind to its column's type, which types the whole list;
        the binds carry driver values (no bind processing of their own).
        """
        cache_key = (*self._casts(columns), str(count))
        cached = self._values_sources.get(cache_key)
        if cached is not None:
            return cached
        width = len(columns)
        names = tuple(f"p{i}_{j}" for i in range(count) for j in range(width))
        binds: list[Any] = [bindparam(name) for name in names]
        rows: list[tuple[Any, ...]] = [
            tuple(binds[i * width : (i + 1) * width]) for i in range(count)
        ]
        rows[0] = tuple(cast(bind, col.type) for bind, col in zip(rows[0], columns, strict=True))
        data = shaped_values(
            [column(f"c{j}", col.type) for j, col in enumerate(columns)],
            rows,
            shape=cache_key,
            name="v0",
        )
        source = select(*data.c).subquery("v")
        if len(self._values_sources) >= 64:
            self._values_sources.clear()
        self._values_sources[cache_key] = (source, names)
        return source, names

    def upsert_statement(
        self,
        meta: ModelMeta,
        conflict: Sequence[str],
        targets: Sequence[str],
        source: tuple[Sequence[Column[Any]], Select[Any]] | None = None,
    ) -> Insert:
        """``INSERT ... ON CONFLICT (conflict) DO UPDATE SET`` / ``DO NOTHING``."""
        assert meta.table is not None
        statement = pg_insert(meta.table)
        if source is not None:
            statement = statement.from_select(list(source[0]), source[1])
        index_elements = [meta.columns[name] for name in conflict]
        if not targets:
            return statement.on_conflict_do_nothing(index_elements=index_elements)
        return statement.on_conflict_do_update(
            index_elements=index_elements,
            set_={
                meta.columns[name]: statement.excluded[meta.columns[name].key] for name in targets
            },
        )

    # -- errors -----------------------------------------------------------------------
    # (error classification goes here)
