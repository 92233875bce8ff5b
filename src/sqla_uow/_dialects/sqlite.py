"""The SQLite backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    Insert,
    bindparam,
    column,
    func,
    insert,
    literal,
    literal_column,
    select,
    table,
    true,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.schema import Column
from sqlalchemy.sql import Select

from ._base import Backend
from ._values import shaped_values

if TYPE_CHECKING:
    from sqla_uow._model import ModelMeta

__all__ = ["SQLiteBackend"]


class SQLiteBackend(Backend):
    """SQLite."""

    name: ClassVar[str] = "SQLite"

    # -- transactions -----------------------------------------------------------------
    # (transaction behaviour goes here)

    # -- statements -------------------------------------------------------------------
    # create_many: SQLite has no ordered form of insertmanyvalues, so the statement
    # assigns the keys itself (see create_statement). upsert_many: an executemany of the
    # compiled statement; sqlite3 sums the changes of every execution.

    upsert_form: ClassVar[str | None] = "executemany"
    checks_conflict_target: ClassVar[bool] = True

    _sequence: ClassVar[Any] = table("sqlite_sequence", column("name"), column("seq"))
    _creates: ClassVar[dict[tuple[Any, ...], tuple[Insert, tuple[str, ...]]]] = {}

    def assigns_keys(self, meta: ModelMeta) -> bool:
        """A plain table with a generated integer key and no SQL-expression default."""
        return (
            meta.table is not None
            and meta.rowid_key is not None
            and meta.python_defaults is not None
            and bool(self.dialect.insert_returning)
        )

    def create_statement(
        self, meta: ModelMeta, names: Sequence[str], count: int, *, generated: bool
    ) -> tuple[Insert, tuple[str, ...]]:
        """``INSERT ... SELECT ... FROM (VALUES ...) RETURNING`` of every column.

        The binds carry driver values and no type of their own (the rows are bound
        processed already).

        With *generated*, the key is computed in the statement: the largest key before
        it (and, for an AUTOINCREMENT table, the largest key ever handed out) plus the
        1-based position of the row in the VALUES list, the value SQLite's own ROWID
        algorithm picks. Cached per shape (see `shaped_values`).
        """
        target, key = meta.table, meta.rowid_key
        assert target is not None
        assert key is not None
        cache_key = (target, tuple(names), count, generated)
        cached = self._creates.get(cache_key)
        if cached is not None:
            return cached
        width = len(names)
        params = tuple(f"p{i}_{j}" for i in range(count) for j in range(width))
        columns = [meta.columns[name] for name in names]
        binds: list[list[Any]] = [
            [bindparam(params[i * width + j]) for j in range(width)] for i in range(count)
        ]
        # SQLite names the columns of a VALUES list column1, column2, ...
        data: list[tuple[Any, ...]] = [
            (literal_column(str(i + 1)), *binds[i]) if generated else tuple(binds[i])
            for i in range(count)
        ]
        picks: list[Any] = [column(f"column{j + 1}") for j in range(len(data[0]))]
        rows = shaped_values(picks, data, shape=(len(picks), count, generated))
        refs: list[Any] = [literal_column(pick.name) for pick in picks]
        if generated:
            largest: Any = func.coalesce(select(func.max(key)).scalar_subquery(), 0)
            if target.dialect_options["sqlite"].get("autoincrement"):
                seq = self._sequence
                handed_out = select(seq.c.seq).where(seq.c.name == literal(target.name))
                largest = func.max(largest, func.coalesce(handed_out.scalar_subquery(), 0))
            base = select(largest.label("b")).subquery("base")
            source = select(base.c.b + refs[0], *refs[1:]).select_from(base.join(rows, true()))
            statement = insert(target).from_select([key, *columns], source)
        else:
            statement = insert(target).from_select(columns, select(*refs).select_from(rows))
        created = (statement.returning(*target.c), params)
        if len(self._creates) >= 64:
            self._creates.clear()
        self._creates[cache_key] = created
        return created

    def upsert_statement(
        self,
        meta: ModelMeta,
        conflict: Sequence[str],
        targets: Sequence[str],
        source: tuple[Sequence[Column[Any]], Select[Any]] | None = None,
    ) -> Insert:
        """``INSERT ... ON CONFLICT (conflict) DO UPDATE SET`` / ``DO NOTHING``."""
        assert meta.table is not None
        statement = sqlite_insert(meta.table)
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
