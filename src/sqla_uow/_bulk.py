"""Dialect-aware bulk writes: insert, update, delete and upsert many rows per statement.

`BulkOperationsMixin` gives `AsyncRepository` its bulk methods. Every method validates
all rows before any SQL is sent, sends one statement per chunk of rows (never one per
row), flushes the session's pending changes first, and never commits.

How each statement is built:

- ``create_many``: SQLAlchemy's "insertmanyvalues" ``INSERT ... RETURNING`` with
  ``sort_by_parameter_order=True``, which SQLAlchemy documents as returning rows in
  parameter order (PostgreSQL and MariaDB use an ordered ``INSERT ... SELECT`` form for
  autoincrement keys). SQLite has no such form, so there the statement assigns the keys
  itself, inside one ``INSERT ... SELECT``: key = (largest key before the statement) +
  (position of the row in the chunk), the same value SQLite's own ROWID algorithm picks.
  Rows are matched to input positions by their key value, never by RETURNING order.
- ``insert_many``: an executemany ``INSERT`` per chunk (no RETURNING).
- ``update_many``: an executemany ``UPDATE ... WHERE pk = ?`` (SQLite, MySQL / MariaDB)
  or one ``UPDATE ... FROM (VALUES ...)`` per chunk (PostgreSQL, whose asyncpg driver
  reports no row count for executemany).
- ``upsert_many``: ``INSERT ... ON CONFLICT (...) DO UPDATE`` / ``DO NOTHING``
  (PostgreSQL, SQLite) or ``INSERT ... ON DUPLICATE KEY UPDATE`` (MySQL / MariaDB): an
  executemany on SQLite, ``INSERT ... SELECT FROM (VALUES ...)`` per chunk on
  PostgreSQL, insertmanyvalues with RETURNING (to count rows) on MariaDB.
- ``delete_many`` / ``delete_where``: ORM-enabled ``DELETE ... WHERE pk IN (...)``.

Bulk statements bypass the unit of work. To keep the session truthful, objects already
in its identity map are synchronised: deleted ones leave the session; updated and
upserted ones get the written values as their loaded state (attributes with an
``onupdate`` default are expired after `update_many`). Rows of models mapped to
several tables (joined inheritance) are not supported by the SQLite and PostgreSQL
statement forms built here.
"""

from __future__ import annotations

import contextlib
from collections.abc import (
    AsyncGenerator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from operator import itemgetter
from typing import Any, Generic, TypeGuard, cast

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    Float,
    Integer,
    Interval,
    Numeric,
    String,
    TextualSelect,
    Time,
    Uuid,
    bindparam,
    delete,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper, attributes
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.schema import Column, Table
from sqlalchemy.sql import Subquery
from sqlalchemy.sql import column as sql_column

from ._errors import database_errors, is_unmatched_conflict_target
from ._filters import (
    as_values,
    check_assignable,
    check_write_values,
    identity_of,
    mapper_of,
    model_columns,
    model_meta,
    unique_key_error,
)
from ._typing import ModelT
from ._where import compile_where
from .exceptions import InvalidFieldError, UnsupportedDialectError

__all__ = ["DEFAULT_CHUNK_SIZE", "BulkOperationsMixin"]

DEFAULT_CHUNK_SIZE = 1000
"""Rows per ``INSERT ... RETURNING`` statement of `create_many` unless ``chunk_size`` says
otherwise (SQLAlchemy's own default page size; larger pages measured no faster)."""

_UPSERT_DIALECTS = ("postgresql", "sqlite", "mysql", "mariadb")


def _max_parameters(dialect: Dialect) -> int:
    """Bound parameters one statement may carry on *dialect*."""
    limit = getattr(dialect, "insertmanyvalues_max_parameters", 32700)
    return int(limit) if isinstance(limit, int) and limit > 0 else 32700


def _rows_per_statement(
    dialect: Dialect, params_per_row: int, chunk_size: int | None, default: int | None
) -> int:
    by_limit = max(1, _max_parameters(dialect) // max(1, params_per_row))
    wanted = chunk_size if chunk_size is not None else default
    return by_limit if wanted is None else max(1, min(wanted, by_limit))


def _check_chunk_size(model: type[Any], chunk_size: int | None) -> None:
    if chunk_size is None:
        return
    if type(chunk_size) is not int or chunk_size < 1:
        raise InvalidFieldError(
            f"chunk_size must be a positive int or None, got {chunk_size!r}",
            model=model,
            field="chunk_size",
        )


class _DefaultContext:
    """The part of SQLAlchemy's execution context a column default function may read."""

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.current_parameters = parameters

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> dict[str, Any]:
        return self.current_parameters


class _Plan:
    """What the bulk methods need to know about a model, computed once per model."""

    def __init__(self, model: type[Any]) -> None:
        self.model = model
        self.mapper: Mapper[Any] = mapper_of(model)
        self.props = model_columns(model)
        self.writable = frozenset(self.props)
        self.columns: dict[str, Column[Any]] = {
            key: cast("Column[Any]", prop.columns[0]) for key, prop in self.props.items()
        }
        self.keys_are_column_keys = all(col.key == key for key, col in self.columns.items())
        self.pk_columns: tuple[Column[Any], ...] = tuple(
            cast("Column[Any]", col) for col in self.mapper.primary_key
        )
        self.pk_keys: tuple[str, ...] = tuple(
            self.mapper.get_property_by_column(col).key for col in self.pk_columns
        )
        self.relationships = frozenset(self.mapper.relationships.keys())
        local = self.mapper.local_table
        self.table: Table | None = None
        if isinstance(local, Table) and len(self.mapper.tables) == 1:
            self.table = local
        self.onupdate_keys = frozenset(
            key
            for key, col in self.columns.items()
            if col.onupdate is not None or col.server_onupdate is not None
        )
        self.sqlite_key = self._sqlite_generated_key()
        autoincrement = self.table.autoincrement_column if self.table is not None else None
        self.generated_pk_keys: tuple[str, ...] = tuple(
            key
            for key, col in zip(self.pk_keys, self.pk_columns, strict=True)
            if col is autoincrement or col.default is not None or col.server_default is not None
        )
        self.python_defaults = self._python_defaults()

    def _sqlite_generated_key(self) -> Column[Any] | None:
        """The single integer key SQLite would generate, if the SQLite path can handle it."""
        mapper, table = self.mapper, self.table
        if (
            table is None
            or mapper.inherits is not None
            or mapper.polymorphic_on is not None
            or mapper.version_id_col is not None
            or len(self.pk_columns) != 1
        ):
            return None
        key = self.pk_columns[0]
        if (
            table.autoincrement_column is not key
            or not isinstance(key.type, Integer)
            or key.default is not None
            or key.server_default is not None
        ):
            return None
        return key

    def _python_defaults(self) -> dict[str, Any] | None:
        """Python-side column defaults by attribute key; None when one is a SQL expression."""
        defaults: dict[str, Any] = {}
        for key, col in self.columns.items():
            default = col.default
            if default is None or col is self.sqlite_key:
                continue
            if getattr(default, "is_scalar", False):
                defaults[key] = ("scalar", default.arg)  # type: ignore[attr-defined]
            elif getattr(default, "is_callable", False):
                defaults[key] = ("callable", default.arg)  # type: ignore[attr-defined]
            else:
                return None
        return defaults


_PLANS: dict[type[Any], _Plan] = {}
_SQLITE_STATEMENTS: dict[tuple[Any, ...], tuple[TextualSelect, tuple[str, ...]]] = {}


def _plan(model: type[Any]) -> _Plan:
    plan = _PLANS.get(model)
    if plan is None:
        plan = _PLANS[model] = _Plan(model)
    return plan


_PG_SOURCES: dict[tuple[Any, ...], tuple[Subquery, tuple[str, ...]]] = {}


def _pg_values_source(
    dialect: Dialect, columns: tuple[Column[Any], ...], count: int
) -> tuple[Subquery, tuple[str, ...]]:
    """``(SELECT * FROM (VALUES ...) AS v0 (c0, c1, ...)) AS v`` with *count* rows of binds.

    Built as text once per shape and cached: SQLAlchemy's ``values()`` construct compiles
    in time quadratic in the number of rows. The first row casts each bind to its
    column's type, which types the whole VALUES list for PostgreSQL.
    """
    casts = tuple(str(col.type.compile(dialect=dialect)) for col in columns)
    cache_key = (dialect.name, casts, count)
    cached = _PG_SOURCES.get(cache_key)
    if cached is not None:
        return cached
    width = len(columns)
    rows_sql = ", ".join(
        "("
        + ", ".join(
            f"CAST(:p{i}_{j} AS {casts[j]})" if i == 0 else f":p{i}_{j}" for j in range(width)
        )
        + ")"
        for i in range(count)
    )
    names = [f"c{j}" for j in range(width)]
    source = (
        sql_text(f"SELECT * FROM (VALUES {rows_sql}) AS v0 ({', '.join(names)})")
        .columns(*(sql_column(name, col.type) for name, col in zip(names, columns, strict=True)))
        .subquery("v")
    )
    param_names = tuple(f"p{i}_{j}" for i in range(count) for j in range(width))
    if len(_PG_SOURCES) >= 64:
        _PG_SOURCES.clear()
    _PG_SOURCES[cache_key] = (source, param_names)
    return source, param_names


_UNNEST_TYPES = (Integer, String, Boolean, Float, Numeric, Date, DateTime, Time, Interval, Uuid)
_PG_UNNEST: dict[tuple[str, ...], Subquery] = {}


def _pg_sources(
    dialect: Dialect,
    columns: tuple[Column[Any], ...],
    value_rows: list[tuple[Any, ...]],
    chunk_size: int | None,
) -> Iterator[tuple[Subquery, dict[str, Any]]]:
    """Row sources ``v(c0, c1, ...)`` for PostgreSQL, with their parameters, per chunk.

    Columns of plain scalar types travel as one array per column through
    ``unnest(CAST(:a0 AS type[]), ...)``: a statement of a fixed shape, prepared once,
    whatever the number of rows. Other types (JSON, enums, custom types with bind
    processing) go through a ``VALUES`` list, chunked by the bind-parameter limit.
    *value_rows* hold values already processed for the driver.
    """
    width = len(columns)
    if all(
        isinstance(col.type, _UNNEST_TYPES)
        and col.type.dialect_impl(dialect).bind_processor(dialect) is None
        for col in columns
    ):
        casts = tuple(str(col.type.compile(dialect=dialect)) for col in columns)
        source = _PG_UNNEST.get(casts)
        if source is None:
            names = [f"c{j}" for j in range(width)]
            arrays = ", ".join(f"CAST(:a{j} AS {casts[j]}[])" for j in range(width))
            source = (
                sql_text(f"SELECT * FROM unnest({arrays}) AS v0 ({', '.join(names)})")
                .columns(*(sql_column(n, col.type) for n, col in zip(names, columns, strict=True)))
                .subquery("v")
            )
            if len(_PG_UNNEST) >= 64:
                _PG_UNNEST.clear()
            _PG_UNNEST[casts] = source
        per_statement = chunk_size or len(value_rows)
        for start in range(0, len(value_rows), per_statement):
            part = value_rows[start : start + per_statement]
            yield (
                source,
                {f"a{j}": list(values_) for j, values_ in enumerate(zip(*part, strict=True))},
            )
        return
    per_statement = _rows_per_statement(dialect, width, chunk_size, None)
    for start in range(0, len(value_rows), per_statement):
        part = value_rows[start : start + per_statement]
        values_source, param_names = _pg_values_source(dialect, columns, len(part))
        flat = [value for row in part for value in row]
        yield values_source, dict(zip(param_names, flat, strict=True))


def _driver_rows(
    dialect: Dialect,
    columns: tuple[Column[Any], ...],
    names: Sequence[str],
    rows: list[dict[str, Any]],
) -> list[tuple[Any, ...]]:
    """The values of *names* of each row, as tuples, through the columns' bind processing."""
    get = itemgetter(*names)
    value_rows = [get(row) for row in rows] if len(names) > 1 else [(get(row),) for row in rows]
    processors = [col.type.dialect_impl(dialect).bind_processor(dialect) for col in columns]
    if all(proc is None for proc in processors):
        return value_rows
    return [
        tuple(
            [
                proc(value) if proc is not None and value is not None else value
                for value, proc in zip(row, processors, strict=True)
            ]
        )
        for row in value_rows
    ]


def _without_null_generated_keys(
    plan: _Plan, rows_values: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """*rows_values* with ``None`` dropped from primary-key columns the database generates.

    A row such as ``{"id": None, ...}`` (typical of pydantic input models) asks for a
    generated key, as it does with ``session.add``; rows without such an entry are
    returned as they are, the others as new dicts.
    """
    generated = plan.generated_pk_keys
    if not generated:
        return rows_values
    result = rows_values
    for index, row in enumerate(rows_values):
        if any(name in row and row[name] is None for name in generated):
            if result is rows_values:
                result = list(rows_values)
            result[index] = {
                name: value
                for name, value in row.items()
                if value is not None or name not in generated
            }
    return result


_COMPOSITE_IN_ROWS = 1000
"""Keys per ``(a, b) IN ((...), ...)`` statement of `delete_many` for composite keys:
PostgreSQL's parser recurses per tuple and exceeds its stack depth for around 10,000."""


def _is_instance_state(value: object) -> TypeGuard[InstanceState[Any]]:
    return isinstance(value, InstanceState)


def _require_single_table(plan: _Plan, method: str) -> Table:
    if plan.table is None:
        raise TypeError(
            f"{method} needs {plan.model.__name__} mapped to a single table; "
            "models of joined-table inheritance are not supported"
        )
    return plan.table


def _row_error(model: type[Any], index: int, message: str, **kwargs: Any) -> InvalidFieldError:
    return InvalidFieldError(f"row {index} of {model.__name__}: {message}", model=model, **kwargs)


def _check_all_rows(model: type[Any], all_rows: object) -> None:
    """Refuse an ``all_rows`` that is not a bool."""
    if not isinstance(all_rows, bool):
        raise InvalidFieldError(
            f"all_rows must be True or False, got {all_rows!r}", model=model, field="all_rows"
        )


def _refuse_unbounded_delete(
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


def _duplicate_row_error(
    model: type[Any], index: int, first: int, conflict: Sequence[str], identity: Any
) -> InvalidFieldError:
    """Row *index* repeats the *conflict* values *identity* of row *first*."""
    return _row_error(
        model,
        index,
        f"same {', '.join(conflict)} as row {first} ({identity!r}); "
        "one statement cannot write a row twice",
        field=conflict[0],
    )


def _check_update_rows(
    model: type[Any], rows_values: Sequence[Mapping[str, Any]], pk: Sequence[str], fields: list[str]
) -> None:
    """Refuse an ``update_many`` row without its whole primary key or with nothing to set."""
    for index, row in enumerate(rows_values):
        missing = [name for name in pk if name not in row]
        if missing:
            raise _row_error(
                model,
                index,
                f"update_many needs the primary key {', '.join(map(repr, missing))} in "
                f"every row; this row has: {', '.join(sorted(row)) or 'nothing'}",
                field=missing[0],
                choices=pk,
            )
        if len(row) == len(pk):
            raise _row_error(
                model,
                index,
                "update_many row sets no column besides the primary key; "
                f"fields: {', '.join(fields)}",
                choices=fields,
            )


class BulkOperationsMixin(Generic[ModelT]):
    """Bulk inserts, updates, deletes and upserts for a repository of ``ModelT``.

    Mixed into `AsyncRepository`; it needs ``model`` (the mapped class) and ``session``
    (an `AsyncSession`). Every method checks all rows before it sends SQL, flushes the
    session's pending changes first, sends one statement per chunk, and never commits.
    Integrity violations raise `ConflictError` with the driver's error chained.

    Example:
        ```python
        users = UserRepository(session)
        created = await users.create_many([{"email": "a@x.io"}, {"email": "b@x.io"}])
        await users.update_many([{"id": created[0].id, "name": "Ann"}])
        await users.upsert_many(rows, on_conflict=("email",))
        await users.delete_many([u.id for u in created])
        ```
    """

    model: type[ModelT]
    session: AsyncSession

    # -- helpers -------------------------------------------------------------------

    def _dialect(self) -> Dialect:
        bind = self.session.get_bind(mapper=mapper_of(self.model))
        return bind.dialect

    def _row_values(
        self, plan: _Plan, rows: Iterable[Any], *, copy: bool = True
    ) -> list[dict[str, Any]]:
        """Every row as a dict of attribute values, all validated before any SQL.

        Names must be writable columns and values ones their columns can store (see
        `check_write_values`). Plain dicts are copied unless *copy* is false (the
        caller then must not mutate them; a row whose values were converted is a copy).
        """
        model = plan.model
        writable = plan.writable
        dialect = self._dialect()
        result: list[dict[str, Any]] = []
        for index, row in enumerate(rows):
            row_values: dict[str, Any]
            if type(row) is dict:
                plain = cast("dict[str, Any]", row)
                row_values = dict(plain) if copy else plain
            else:
                state: object = getattr(row, "_sa_instance_state", None)
                if _is_instance_state(state):
                    self._check_instance(plan, index, state)
                try:
                    row_values = as_values(row, {})
                except TypeError as exc:
                    raise _row_error(model, index, str(exc)) from None
            if not writable.issuperset(row_values):
                check_assignable(model, row_values)
            result.append(check_write_values(model, row_values, dialect=dialect, row=index))
        return result

    def _check_instance(self, plan: _Plan, index: int, state: InstanceState[Any]) -> None:
        if state.mapper is not plan.mapper:
            raise _row_error(
                plan.model,
                index,
                f"got a {state.mapper.class_.__name__} instance, "
                f"expected a mapping or a {plan.model.__name__}",
            )
        for name in plan.relationships.intersection(state.dict):
            if state.dict[name]:
                raise _row_error(
                    plan.model,
                    index,
                    f"relationship {name!r} is set; bulk writes store columns only "
                    "(use create() to cascade relationships)",
                    field=name,
                    choices=sorted(plan.writable),
                )

    @staticmethod
    def _group_by_keys(rows: list[dict[str, Any]]) -> dict[frozenset[str], list[int]]:
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

    def _check_unique(
        self, plan: _Plan, rows_values: list[dict[str, Any]], conflict: tuple[str, ...]
    ) -> None:
        """Refuse two rows with the same *conflict* values (one statement cannot write both)."""
        get = cast("Callable[[dict[str, Any]], Any]", itemgetter(*conflict))
        try:
            identities: list[Any] = [get(row) for row in rows_values]
            if len(set(identities)) == len(identities):
                return
        except TypeError:  # unhashable values: leave it to the database
            return
        seen: dict[Any, int] = {}
        for index, identity in enumerate(identities):
            first = seen.setdefault(identity, index)
            if first != index:
                raise _duplicate_row_error(self.model, index, first, conflict, identity)

    async def _execute(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: dict[str, Any] | None = None,
    ) -> Any:
        # preserve_rowcount: SQLAlchemy closes the cursor of an INSERT without RETURNING
        # before its row count is read, and psycopg resets the count on close (asyncpg
        # keeps it); with the option the count is read first, on every driver.
        options = {"preserve_rowcount": True, **(execution_options or {})}
        with database_errors(self.model):
            return await self.session.execute(statement, params, execution_options=options)

    async def _execute_in_chunks(
        self, statement: Any, params: list[dict[str, Any]], chunk_size: int | None
    ) -> int:
        """Executemany of *statement*, *chunk_size* rows at a time; the rows changed."""
        per_statement = chunk_size or len(params)
        changed = 0
        for start in range(0, len(params), per_statement):
            result = await self._execute(statement, params[start : start + per_statement])
            changed += max(0, result.rowcount)
        return changed

    # -- inserts ---------------------------------------------------------------------

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
        _check_chunk_size(self.model, chunk_size)
        plan = _plan(self.model)
        rows_values = _without_null_generated_keys(plan, self._row_values(plan, rows, copy=False))
        if not rows_values:
            return []
        dialect = self._dialect()
        await self.session.flush()
        if (
            dialect.name == "sqlite"
            and dialect.insert_returning
            and plan.sqlite_key is not None
            and plan.python_defaults is not None
            and plan.table is not None
        ):
            return await self._sqlite_create(plan, dialect, rows_values, chunk_size)
        if not dialect.insert_returning:  # pragma: no cover - MySQL: no INSERT ... RETURNING
            # The unit of work reads each generated key from cursor.lastrowid.
            objects = [self.model(**row) for row in rows_values]
            self.session.add_all(objects)
            with database_errors(self.model):
                await self.session.flush(objects)
            return objects
        results: list[Any] = [None] * len(rows_values)
        statement = insert(self.model).returning(self.model, sort_by_parameter_order=True)
        for keys, indexes in self._group_by_keys(rows_values).items():
            per_statement = _rows_per_statement(
                dialect, len(keys) + 1, chunk_size, DEFAULT_CHUNK_SIZE
            )
            # One execute per group: insertmanyvalues sends one INSERT per page of
            # per_statement rows and hands the rows back in parameter order.
            result = await self._execute(
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

    async def _sqlite_create(
        self,
        plan: _Plan,
        dialect: Dialect,
        rows_values: list[dict[str, Any]],
        chunk_size: int | None,
    ) -> list[ModelT]:
        table, key = plan.table, plan.sqlite_key
        assert table is not None
        assert key is not None
        assert plan.python_defaults is not None
        key_attr = plan.mapper.get_property_by_column(key).key
        defaults = plan.python_defaults
        rows_values = list(rows_values)  # filled copies replace rows missing a default
        for index, row in enumerate(rows_values):
            missing = [name for name in defaults if name not in row]
            if missing:
                context = _DefaultContext(
                    {plan.columns[name].key: value for name, value in row.items()}
                )
                row = rows_values[index] = dict(row)
                for name in missing:
                    kind, arg = defaults[name]
                    row[name] = arg(context) if kind == "callable" else arg
        results: list[Any] = [None] * len(rows_values)
        processors = {
            name: col.type.dialect_impl(dialect).bind_processor(dialect)
            for name, col in plan.columns.items()
        }
        for keys, indexes in self._group_by_keys(rows_values).items():
            generated = key_attr not in keys
            names = sorted(keys)
            per_statement = _rows_per_statement(dialect, len(names), chunk_size, None)
            procs = [processors[name] for name in names]
            for start in range(0, len(indexes), per_statement):
                part = indexes[start : start + per_statement]
                statement, param_names = self._sqlite_statement(
                    plan, dialect, tuple(names), len(part), generated=generated
                )
                flat: list[Any] = []
                for i in part:
                    row = rows_values[i]
                    for name, proc in zip(names, procs, strict=True):
                        value = row[name]
                        flat.append(
                            proc(value) if proc is not None and value is not None else value
                        )
                params = dict(zip(param_names, flat, strict=True))
                result = await self._execute(select(self.model).from_statement(statement), params)
                objs = result.scalars().all()
                if len(objs) != len(part):  # pragma: no cover - defensive
                    raise RuntimeError(f"inserted {len(part)} rows, read back {len(objs)}")
                if generated:
                    objs = sorted(objs, key=lambda obj: getattr(obj, key_attr))
                    first = getattr(objs[0], key_attr)
                    if getattr(objs[-1], key_attr) - first != len(part) - 1:  # pragma: no cover
                        raise RuntimeError("SQLite assigned non-contiguous keys in one statement")
                    for position, obj in zip(part, objs, strict=True):
                        results[position] = obj
                else:
                    by_key = {getattr(obj, key_attr): obj for obj in objs}
                    for position in part:
                        results[position] = by_key[int(rows_values[position][key_attr])]
        return results

    @staticmethod
    def _sqlite_statement(
        plan: _Plan, dialect: Dialect, names: tuple[str, ...], count: int, *, generated: bool
    ) -> tuple[TextualSelect, tuple[str, ...]]:
        """``INSERT ... SELECT ... FROM (VALUES ...) RETURNING *`` for *count* rows of *names*.

        With *generated*, the key column is computed in the statement as the largest key
        before it (and, for an AUTOINCREMENT table, the largest key ever handed out) plus
        the 1-based position of the row in the VALUES list.
        """
        table, key = plan.table, plan.sqlite_key
        assert table is not None
        assert key is not None
        cache_key = (table, names, count, generated)
        cached = _SQLITE_STATEMENTS.get(cache_key)
        if cached is not None:
            return cached
        quote = dialect.identifier_preparer
        table_sql = quote.format_table(table)
        key_sql = quote.format_column(key)
        width = len(names)
        param_names = tuple(f"p{i}_{j}" for i in range(count) for j in range(width))
        target = [quote.format_column(plan.columns[name]) for name in names]
        if generated:
            rows_sql = ", ".join(
                "(" + ", ".join([str(i + 1), *(f":p{i}_{j}" for j in range(width))]) + ")"
                for i in range(count)
            )
            base = f"SELECT coalesce(max({key_sql}), 0) AS b FROM {table_sql}"
            if table.dialect_options["sqlite"].get("autoincrement"):
                name = table.name.replace("'", "''")
                base = (
                    f"SELECT max((SELECT coalesce(max({key_sql}), 0) FROM {table_sql}), "
                    f"coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{name}'), 0)) AS b"
                )
            picks = ", ".join(f"v.column{j + 2}" for j in range(width))
            sql = (
                f"INSERT INTO {table_sql} ({key_sql}, {', '.join(target)}) "
                f"SELECT base.b + v.column1, {picks} "
                f"FROM ({base}) AS base, (VALUES {rows_sql}) AS v"
            )
        else:
            rows_sql = ", ".join(
                "(" + ", ".join(f":p{i}_{j}" for j in range(width)) + ")" for i in range(count)
            )
            sql = f"INSERT INTO {table_sql} ({', '.join(target)}) VALUES {rows_sql}"
        returning = ", ".join(quote.format_column(col) for col in table.c)
        statement = sql_text(f"{sql} RETURNING {returning}").columns(*table.c)
        if len(_SQLITE_STATEMENTS) >= 64:
            _SQLITE_STATEMENTS.clear()
        _SQLITE_STATEMENTS[cache_key] = (statement, param_names)
        return statement, param_names

    async def insert_many(self, rows: Iterable[Any], *, chunk_size: int | None = None) -> int:
        """Insert many rows without reading them back: the fast path of `create_many`.

        Rows are validated like `create_many`'s. Each chunk is one executemany call of a
        single ``INSERT``; nothing is loaded into the session.

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
        _check_chunk_size(self.model, chunk_size)
        plan = _plan(self.model)
        rows_values = _without_null_generated_keys(plan, self._row_values(plan, rows, copy=False))
        if not rows_values:
            return 0
        dialect = self._dialect()
        statement = insert(self.model)
        for keys, indexes in self._group_by_keys(rows_values).items():
            per_statement = _rows_per_statement(dialect, len(keys), chunk_size, None)
            for start in range(0, len(indexes), per_statement):
                part = indexes[start : start + per_statement]
                await self._execute(
                    statement,
                    [rows_values[i] for i in part],
                    execution_options={"render_nulls": True},
                )
        return len(rows_values)

    # -- updates ---------------------------------------------------------------------

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
        _check_chunk_size(self.model, chunk_size)
        plan = _plan(self.model)
        rows_values = self._row_values(plan, rows, copy=False)
        _check_update_rows(self.model, rows_values, plan.pk_keys, sorted(plan.writable))
        # PostgreSQL's UPDATE ... FROM applies an arbitrary one of two source rows for the
        # same key, executemany the last one: refuse the ambiguity everywhere.
        self._check_unique(plan, rows_values, plan.pk_keys)
        if not rows_values:
            return 0
        _require_single_table(plan, "update_many")
        dialect = self._dialect()
        await self.session.flush()
        matched = 0
        for keys, indexes in self._group_by_keys(rows_values).items():
            names = sorted(keys.difference(plan.pk_keys))
            group = [rows_values[i] for i in indexes]
            if dialect.name == "postgresql":
                matched += await self._update_from_values(plan, dialect, names, group, chunk_size)
            else:
                matched += await self._update_executemany(plan, dialect, names, group, chunk_size)
        self._sync_identity_map(plan, rows_values, by=plan.pk_keys)
        return matched

    async def _update_executemany(
        self,
        plan: _Plan,
        dialect: Dialect,
        names: list[str],
        group: list[dict[str, Any]],
        chunk_size: int | None,
    ) -> int:
        table = _require_single_table(plan, "update_many")
        pk_binds = {key: f"k_{i}" for i, key in enumerate(plan.pk_keys)}
        set_binds = {name: f"v_{i}" for i, name in enumerate(names)}
        statement = (
            update(table)
            .where(
                *(
                    plan.columns[key] == bindparam(pk_binds[key], type_=plan.columns[key].type)
                    for key in plan.pk_keys
                )
            )
            .values(
                {
                    plan.columns[name]: bindparam(set_binds[name], type_=plan.columns[name].type)
                    for name in names
                }
            )
        )
        binds = {**pk_binds, **set_binds}
        params = [{binds[name]: value for name, value in row.items()} for row in group]
        return await self._execute_in_chunks(statement, params, chunk_size)

    async def _update_from_values(
        self,
        plan: _Plan,
        dialect: Dialect,
        names: list[str],
        group: list[dict[str, Any]],
        chunk_size: int | None,
    ) -> int:
        table = plan.table
        assert table is not None
        keys = [*plan.pk_keys, *names]
        columns = tuple(plan.columns[name] for name in keys)
        pk_count = len(plan.pk_keys)
        matched = 0
        for source, params in _pg_sources(
            dialect, columns, _driver_rows(dialect, columns, keys, group), chunk_size
        ):
            statement = (
                update(table)
                .values(
                    {
                        plan.columns[name]: source.c[f"c{pk_count + i}"]
                        for i, name in enumerate(names)
                    }
                )
                .where(
                    *(plan.columns[key] == source.c[f"c{i}"] for i, key in enumerate(plan.pk_keys))
                )
            )
            result = await self._execute(statement, params)
            matched += max(0, result.rowcount)
        return matched

    def _sync_identity_map(
        self,
        plan: _Plan,
        rows_values: list[dict[str, Any]],
        *,
        by: Sequence[str],
        written: Iterable[str] | None = None,
        expire_onupdate: bool = True,
    ) -> None:
        """Set the written values on matching objects of the identity map.

        Objects are matched on the *by* attributes (read from their loaded state, never
        loaded); *written* limits the attributes set (default: every non-*by* key of the
        row). Attributes with an ``onupdate`` default are expired.
        """
        identity_map = self.session.sync_session.identity_map
        if not len(identity_map):
            return
        rows_by: dict[tuple[Any, ...], dict[str, Any]] = {}
        for values_ in rows_values:
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
            stale = [name for name in plan.onupdate_keys if name not in row]
            if stale and expire_onupdate:
                self.session.expire(obj, stale)

    # -- deletes ---------------------------------------------------------------------

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
        _check_chunk_size(self.model, chunk_size)
        plan = _plan(self.model)
        keys = list(pks)
        width = len(plan.pk_keys)
        if width > 1:
            for index, key in enumerate(keys):
                if not isinstance(key, (tuple, list)) or len(cast("Sequence[Any]", key)) != width:
                    raise _row_error(
                        self.model,
                        index,
                        f"a primary key of {self.model.__name__} is a tuple of "
                        f"{width} values ({', '.join(plan.pk_keys)}), got {key!r}",
                        field=plan.pk_keys[0],
                        choices=plan.pk_keys,
                    )
        if not keys:
            return 0
        dialect = self._dialect()
        idents = [identity_of(self.model, key, dialect=dialect) for key in keys]
        keys = [ident[0] for ident in idents] if width == 1 else idents
        per_statement = _rows_per_statement(
            dialect, width, chunk_size, _COMPOSITE_IN_ROWS if width > 1 else None
        )
        target: Any = (
            getattr(self.model, plan.pk_keys[0])
            if width == 1
            else tuple_(*(getattr(self.model, name) for name in plan.pk_keys))
        )
        deleted = 0
        for start in range(0, len(keys), per_statement):
            statement = delete(self.model).where(target.in_(keys[start : start + per_statement]))
            result = await self._execute(statement)
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
        _check_all_rows(self.model, all_rows)
        criteria = compile_where(self.model, where, filters, dialect=self._dialect())
        _refuse_unbounded_delete(
            self.model,
            has_criteria=bool(criteria),
            all_rows=all_rows,
            fields=model_columns(self.model),
        )
        result = await self._execute(delete(self.model).where(*criteria))
        return max(0, int(result.rowcount))

    # -- upserts ---------------------------------------------------------------------

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

        Objects of the model in the session whose ``on_conflict`` values match a row get
        the updated values set as their loaded state.

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
                column, a row without an ``on_conflict`` or ``update`` column, two rows
                with the same ``on_conflict`` values, or a bad row; nothing was sent.
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
        _check_chunk_size(self.model, chunk_size)
        plan = _plan(self.model)
        conflict = self._column_names("on_conflict", on_conflict, plan)
        if not conflict:
            raise InvalidFieldError(
                "on_conflict needs at least one column",
                model=self.model,
                field="on_conflict",
                choices=sorted(plan.writable),
            )
        explicit = None if update is None else self._column_names("update", update, plan)
        rows_values = _without_null_generated_keys(plan, self._row_values(plan, rows, copy=False))
        groups = self._group_by_keys(rows_values)
        needed = conflict if explicit is None else (*conflict, *explicit)
        for keys, indexes in groups.items():
            missing = [name for name in needed if name not in keys]
            if missing:
                what = "on_conflict" if missing[0] in conflict else "update"
                raise _row_error(
                    self.model,
                    indexes[0],
                    f"upsert_many rows need the {what} column {missing[0]!r}; "
                    f"this row has: {', '.join(sorted(keys)) or 'nothing'}",
                    field=missing[0],
                    choices=sorted(plan.writable),
                )
        self._check_unique(plan, rows_values, conflict)
        dialect = self._dialect()
        if dialect.name not in _UPSERT_DIALECTS:
            raise UnsupportedDialectError(
                f"upsert_many supports {', '.join(_UPSERT_DIALECTS)}; "
                f"this database is {dialect.name}",
                dialect=dialect.name,
            )
        if not rows_values:
            return 0
        table = _require_single_table(plan, "upsert_many")
        await self.session.flush()
        written = 0
        async with self._unmatched_target_translated(conflict, dialect):
            for keys, indexes in groups.items():
                if explicit is None:
                    targets = sorted(keys.difference(conflict).difference(plan.pk_keys))
                else:
                    targets = list(explicit)
                group_rows = [rows_values[i] for i in indexes]
                if dialect.name == "postgresql" and plan.python_defaults is not None:
                    written += await self._pg_upsert(
                        plan, table, dialect, keys, conflict, targets, group_rows, chunk_size
                    )
                else:
                    statement = self._upsert_statement(plan, table, dialect, conflict, targets)
                    written += await self._upsert_rows(
                        plan, dialect, statement, keys, group_rows, chunk_size
                    )
                if targets:
                    self._sync_identity_map(
                        plan,
                        [rows_values[i] for i in indexes],
                        by=conflict,
                        written=targets,
                        expire_onupdate=False,
                    )
        return written

    @contextlib.asynccontextmanager
    async def _unmatched_target_translated(
        self, conflict: tuple[str, ...], dialect: Dialect
    ) -> AsyncGenerator[None, None]:
        """Translate the database's refusal of an ``on_conflict`` no unique key matches.

        When the model declares a unique key over *conflict* (or on MySQL / MariaDB,
        whose upsert fires on any key) the block runs as it is. Otherwise the index may
        exist in the database only: the statements are sent, inside a savepoint on
        PostgreSQL (where a failed statement would abort the transaction), and the
        database's refusal becomes `InvalidFieldError` naming the model's unique keys.
        """
        wanted = set(conflict)
        if dialect.name not in ("postgresql", "sqlite") or any(
            set(keys) == wanted for _, keys in model_meta(self.model).unique
        ):
            yield
            return
        try:
            if dialect.name == "postgresql":
                async with self.session.begin_nested():
                    yield
            else:
                yield
        except sa_exc.DBAPIError as exc:
            if is_unmatched_conflict_target(exc):
                raise unique_key_error(self.model, conflict) from exc
            raise

    async def _upsert_rows(
        self,
        plan: _Plan,
        dialect: Dialect,
        statement: Any,
        keys: frozenset[str],
        group_rows: list[dict[str, Any]],
        chunk_size: int | None,
    ) -> int:
        """Run *statement* for every row: executemany on SQLite, RETURNING pages elsewhere."""
        if dialect.name == "sqlite" and plan.python_defaults is not None:
            return await self._sqlite_executemany(
                plan, dialect, statement, keys, group_rows, chunk_size
            )
        group = (
            group_rows
            if plan.keys_are_column_keys
            else [
                {plan.columns[name].key: value for name, value in row.items()} for row in group_rows
            ]
        )
        if dialect.name == "sqlite":
            # sqlite3 sums the changes of every execution: inserted plus updated rows.
            return await self._execute_in_chunks(statement, group, chunk_size)
        written = 0
        per_statement = _rows_per_statement(dialect, len(keys), chunk_size, None)
        for start in range(0, len(group), per_statement):
            part = group[start : start + per_statement]
            if dialect.insert_returning:
                result = await self._execute(
                    statement.returning(*plan.pk_columns),
                    part,
                    execution_options={"insertmanyvalues_page_size": len(part)},
                )
                written += len(result.all())
            else:  # pragma: no cover - MySQL without RETURNING
                result = await self._execute(statement.values(part))
                written += max(0, result.rowcount)
        return written

    async def _sqlite_executemany(
        self,
        plan: _Plan,
        dialect: Dialect,
        statement: Any,
        keys: frozenset[str],
        group_rows: list[dict[str, Any]],
        chunk_size: int | None,
    ) -> int:
        """Executemany of *statement*, compiled once, with the bind processing done here.

        SQLAlchemy's executemany builds a parameter dict per row through the compiled
        statement; for SQLite, where the database work is cheap, that bookkeeping is
        most of the cost. Python-side column defaults are filled in per row first.
        """
        defaults = plan.python_defaults
        assert defaults is not None
        missing = [name for name in defaults if name not in keys]
        names = sorted({*keys, *missing})
        by_column_key = {plan.columns[name].key: name for name in names}
        compiled = statement.compile(dialect=dialect, column_keys=list(by_column_key))
        order = compiled.positiontup
        if order is None or sorted(order) != sorted(by_column_key):  # pragma: no cover
            group = [
                {plan.columns[name].key: value for name, value in row.items()} for row in group_rows
            ]
            result = await self._execute(statement, group)
            return max(0, int(result.rowcount))
        ordered = [by_column_key[key] for key in order]
        processors = [
            plan.columns[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in ordered
        ]
        scalars = {name: defaults[name][1] for name in missing if defaults[name][0] == "scalar"}
        callables = [name for name in missing if name not in scalars]
        get = itemgetter(*ordered)
        params: list[Any] = []
        for row in group_rows:
            if callables:
                context = _DefaultContext(
                    {plan.columns[name].key: value for name, value in row.items()}
                )
                row = {**scalars, **row}
                for name in callables:
                    row[name] = defaults[name][1](context)
            elif scalars:
                row = {**scalars, **row}
            params.append(get(row))
        if len(ordered) == 1:
            params = [(value,) for value in params]
        if any(proc is not None for proc in processors):
            params = [
                tuple(
                    [
                        proc(value) if proc is not None and value is not None else value
                        for value, proc in zip(values_, processors, strict=True)
                    ]
                )
                for values_ in params
            ]
        connection = await self.session.connection()
        per_statement = chunk_size or len(params)
        written = 0
        for start in range(0, len(params), per_statement):
            with database_errors(self.model):
                result = await connection.exec_driver_sql(
                    compiled.string, params[start : start + per_statement]
                )
            written += max(0, result.rowcount)
        return written

    async def _pg_upsert(
        self,
        plan: _Plan,
        table: Table,
        dialect: Dialect,
        keys: frozenset[str],
        conflict: tuple[str, ...],
        targets: list[str],
        group_rows: list[dict[str, Any]],
        chunk_size: int | None,
    ) -> int:
        """``INSERT ... SELECT FROM (VALUES ...) ON CONFLICT`` per chunk; its row count is exact."""
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        defaults = plan.python_defaults
        assert defaults is not None
        missing = [name for name in defaults if name not in keys]
        names = sorted({*keys, *missing})
        columns = tuple(plan.columns[name] for name in names)
        filled: list[dict[str, Any]] = group_rows
        if missing:
            filled = []
            for row in group_rows:
                context = _DefaultContext(
                    {plan.columns[name].key: value for name, value in row.items()}
                )
                filled_row: dict[str, Any] = dict(row)
                for name in missing:
                    kind, arg = defaults[name]
                    filled_row[name] = arg(context) if kind == "callable" else arg
                filled.append(filled_row)
        index_elements = [plan.columns[name] for name in conflict]
        written = 0
        for source, params in _pg_sources(
            dialect, columns, _driver_rows(dialect, columns, names, filled), chunk_size
        ):
            stmt = pg_insert(table).from_select(
                list(columns), select(*(source.c[f"c{j}"] for j in range(len(names))))
            )
            if targets:
                stmt = stmt.on_conflict_do_update(
                    index_elements=index_elements,
                    set_={
                        plan.columns[name]: stmt.excluded[plan.columns[name].key]
                        for name in targets
                    },
                )
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=index_elements)
            result = await self._execute(stmt, params)
            written += max(0, result.rowcount)
        return written

    def _column_names(self, option: str, names: Sequence[str], plan: _Plan) -> tuple[str, ...]:
        if isinstance(names, str):
            names = (names,)
        result: list[str] = []
        for name in names:
            if name not in plan.writable:
                raise InvalidFieldError(
                    f"{option} names {name!r}, which is not a column of {self.model.__name__}; "
                    f"columns: {', '.join(sorted(plan.writable))}",
                    model=self.model,
                    field=name,
                    choices=sorted(plan.writable),
                )
            result.append(name)
        return tuple(result)

    def _upsert_statement(
        self,
        plan: _Plan,
        table: Table,
        dialect: Dialect,
        conflict: tuple[str, ...],
        targets: list[str],
    ) -> Any:
        columns = plan.columns
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert as mysql_insert

            my_stmt = mysql_insert(table)
            if targets:
                # Column keys, not Column objects: older SQLAlchemy 2.0 releases match only
                # strings here.
                return my_stmt.on_duplicate_key_update(
                    {columns[name].key: my_stmt.inserted[columns[name].key] for name in targets}
                )
            first = columns[conflict[0]]
            return my_stmt.on_duplicate_key_update({first.key: first})
        index_elements = [columns[name] for name in conflict]
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            pg_stmt = pg_insert(table)
            if not targets:
                return pg_stmt.on_conflict_do_nothing(index_elements=index_elements)
            return pg_stmt.on_conflict_do_update(
                index_elements=index_elements,
                set_={columns[name]: pg_stmt.excluded[columns[name].key] for name in targets},
            )
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite_stmt = sqlite_insert(table)
        if not targets:
            return lite_stmt.on_conflict_do_nothing(index_elements=index_elements)
        return lite_stmt.on_conflict_do_update(
            index_elements=index_elements,
            set_={columns[name]: lite_stmt.excluded[columns[name].key] for name in targets},
        )
