"""`insert_many` and `create_many` through the driver's bulk-copy protocol, where it serves.

PostgreSQL (asyncpg, psycopg) loads rows with ``COPY ... FROM STDIN`` on the session's own
connection (`Backend.copies`, `Backend.copy_rows`), inside the current transaction.
Python-side column defaults are filled in first, as the ``INSERT`` path's SQLAlchemy
does. Where COPY cannot serve (another driver, a column whose values need conversions
the driver cannot make for COPY, too few rows, SQL-expression defaults, and for
`create_many` server-side defaults the objects would miss or a key drawn from no
sequence) these methods send nothing and return None: the caller takes the ``INSERT`` path.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.schema import Column

from ._compat import add_loaded
from ._dialects import Backend, bind_values
from ._errors import database_errors
from ._model import ModelMeta
from ._rows import fill_defaults, group_by_keys
from ._scoping import ScopeBase
from ._typing import ModelT

__all__ = ["CopyMixin"]


class CopyMixin(ScopeBase[ModelT]):
    """The COPY paths of `create_many` and `insert_many`."""

    async def _copy_group(
        self,
        meta: ModelMeta,
        backend: Backend,
        keys: frozenset[str],
        rows: list[dict[str, Any]],
    ) -> bool:
        """COPY *rows* (which give the same *keys*) for `insert_many`; False: sent nothing.

        Columns the rows leave out get their Python-side defaults here and their server
        defaults from COPY, as with ``INSERT``.
        """
        table = meta.table
        if table is None or meta.python_defaults is None:
            return False
        missing = [name for name in meta.python_defaults if name not in keys]
        names = sorted({*keys, *missing})
        columns = [meta.columns[name] for name in names]
        if not backend.copies(columns, len(rows)):
            return False
        value_rows = bind_values(
            backend.dialect, columns, names, fill_defaults(meta, rows, missing)
        )
        await self.session.flush()
        connection = await self.session.connection(bind_arguments={"mapper": meta.mapper})
        with database_errors(self.model):
            await backend.copy_rows(connection, table, columns, value_rows)
        return True

    async def _copy_create(
        self, meta: ModelMeta, backend: Backend, rows_values: list[dict[str, Any]]
    ) -> list[ModelT] | None:
        """`create_many` through COPY, keys drawn from the key's sequence in one statement.

        The objects are built from the values written (every column is given, filled in
        from a Python-side default, or NULL: a column with a server-side default the
        rows leave out sends the call to the ``INSERT ... RETURNING`` path) and enter the
        session's identity map as persistent objects, as a query's rows would. None:
        nothing was sent. The caller has flushed the session.
        """
        table = meta.table
        key = meta.rowid_key
        if table is None or key is None or meta.python_defaults is None:
            return None
        key_attr = meta.mapper.get_property_by_column(key).key
        defaults = meta.python_defaults
        groups: list[tuple[frozenset[str], list[int], list[str], list[str], list[Column[Any]]]] = []
        for keys, indexes in group_by_keys(rows_values).items():
            missing = [name for name in defaults if name not in keys]
            names = sorted({*keys, *missing, key_attr})
            columns = [meta.columns[name] for name in names]
            if not backend.copies(columns, len(indexes), create=True) or any(
                col.server_default is not None
                for name, col in meta.columns.items()
                if name not in names
            ):
                return None
            groups.append((keys, indexes, missing, names, columns))
        statement = backend.next_keys(key)
        if statement is None:  # pragma: no cover - every backend that copies has sequences
            return None
        wanted = sum(len(indexes) for keys, indexes, *_ in groups if key_attr not in keys)
        fresh: list[Any] = []
        if wanted:
            result = await self._execute(backend, statement, {"count": wanted})
            fresh = list(result.scalar_one())
            if fresh[0] is None:  # the key draws from no sequence: nothing was consumed
                return None
        connection = await self.session.connection(bind_arguments={"mapper": meta.mapper})
        written: list[dict[str, Any]] = [{}] * len(rows_values)
        drawn = iter(fresh)
        for keys, indexes, missing, names, columns in groups:
            rows = fill_defaults(meta, [rows_values[i] for i in indexes], missing)
            if key_attr not in keys:
                rows = [{**row, key_attr: next(drawn)} for row in rows]
            with database_errors(self.model):
                await backend.copy_rows(
                    connection, table, columns, bind_values(backend.dialect, columns, names, rows)
                )
            for position, row in zip(indexes, rows, strict=True):
                written[position] = row
        # Only once every row is in: a failed group leaves no object in the session.
        unset = dict.fromkeys(meta.columns)  # a column no row gives is NULL
        loaded = [{**unset, **row} for row in written]
        return add_loaded(self.session.sync_session, meta.mapper, loaded, meta.pk)
