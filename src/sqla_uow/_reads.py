"""`ReadMixin`: the reads of `AsyncRepository` — get, find, list, count, pages, streams."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    ColumnElement,
    Select,
    func,
    inspect,
    literal,
    select,
    tuple_,
)
from sqlalchemy.engine import ScalarResult
from sqlalchemy.orm import QueryableAttribute

from ._bulk_base import BulkBase
from ._filters import (
    check_page_size,
    check_stream_chunk_size,
    check_window,
    identity_of,
    not_found_error,
    one_or_none,
)
from ._keyset import keyset_columns, keyset_select
from ._model import ModelMeta
from ._ordering import compile_order_by, order_items, parse_order_item
from ._pagination import CursorPage, KeysetRequest, Page
from ._typing import ModelT
from ._where import Where, compile_where

if TYPE_CHECKING:
    from sqlalchemy.orm.interfaces import ORMOption


__all__ = ["OrderBy", "OrderByItem", "ReadMixin"]

OrderByItem = str | ColumnElement[Any] | QueryableAttribute[Any]
"""One ordering: ``"name"``, ``"-created_at"``, ``User.name`` or ``User.name.desc()``."""
OrderBy = OrderByItem | Sequence[OrderByItem] | None
"""What ``order_by=`` accepts: one ordering, a sequence of them, or ``None``."""

_GET_MANY_CHUNK = 500


class ReadMixin(BulkBase[ModelT]):
    """The reads of a repository of ``ModelT``; mixed into `AsyncRepository`.

    Needs ``model``, ``session``, ``_meta`` (the model's `ModelMeta`) and
    ``cursor_secret``, which `AsyncRepository` sets.
    """

    cursor_secret: ClassVar[bytes | None]
    _meta: ModelMeta
    _pk_names: tuple[str, ...]

    # ----------------------------------------------------------------------------- keys

    def _identity(self, pk: Any) -> tuple[Any, ...]:
        """Normalise a primary key (scalar, tuple or mapping) to a checked identity tuple."""
        return identity_of(self.model, pk, dialect=self._dialect())

    def _pk_attrs(self) -> builtins.list[ColumnElement[Any]]:
        return [getattr(self.model, name).expression for name in self._pk_names]

    # ----------------------------------------------------------------------- statements

    def _select(
        self,
        where: Sequence[Where],
        filters: Mapping[str, Any],
        *,
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        options: Sequence[ORMOption] = (),
        for_update: bool = False,
    ) -> Select[Any]:
        check_window(self.model, limit=limit, offset=offset)
        criteria = compile_where(self.model, where, filters, dialect=self._dialect())
        ordering = compile_order_by(self.model, order_by)
        stmt = select(self.model).where(*criteria)
        if ordering:
            stmt = stmt.order_by(*ordering)
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        if options:
            stmt = stmt.options(*options)
        if for_update:
            stmt = stmt.with_for_update()
        return stmt

    def _stable_order(self, order_by: OrderBy) -> builtins.list[Any]:
        """*order_by* followed by the primary-key columns it does not already name."""
        items = order_items(self.model, order_by)
        named = {parse_order_item(self.model, item)[2] for item in items}
        return [*items, *(name for name in self._pk_names if name not in named)]

    def _unique(self, result: ScalarResult[Any], options: Sequence[ORMOption]) -> ScalarResult[Any]:
        """*result*, made unique when joined eager loading of a collection may repeat rows.

        That is when loader options are given or the mapper eagerly joins a collection;
        uniquing costs a hash per row, so plain queries skip it.
        """
        if options or self._meta.joins_collections:
            return result.unique()
        return result

    # ---------------------------------------------------------------------------- reads

    async def get(
        self,
        pk: Any,
        *,
        options: Sequence[ORMOption] = (),
        for_update: bool = False,
    ) -> ModelT | None:
        """The object with primary key *pk*, or ``None``.

        Answers from the identity map without SQL when the object is loaded, unless
        ``options`` are given or ``for_update=True``: then it always queries (``SELECT
        ... FOR UPDATE`` for the latter) and refreshes the object from the row.

        Args:
            pk: The primary key: a value, or a tuple (or mapping by attribute name) for a
                composite key.
            options: Loader options, such as ``selectinload(User.orders)``.
            for_update: Lock the row until the transaction ends (ignored by SQLite).

        Raises:
            InvalidFieldError: *pk* does not fit the primary key: its shape, or a value
                its column's type does not take (``True``, an integer beyond the
                column's width, text that is not a number for an integer key).

        Example:
            ```python
            user = await users.get(1)
            line = await lines.get((order_id, 3))
            ```
        """
        ident = self._identity(pk)
        return await self.session.get(
            self.model,
            ident,
            options=options,
            with_for_update=True if for_update else None,
            populate_existing=bool(options) or for_update,
        )

    async def get_one(
        self,
        pk: Any,
        *,
        options: Sequence[ORMOption] = (),
        for_update: bool = False,
    ) -> ModelT:
        """The object with primary key *pk*; like `get` but raises when there is none.

        Raises:
            NotFoundError: No row has this primary key (``exc.ident`` is *pk*).
            InvalidFieldError: *pk* does not fit the primary key: its shape, or a value
                its column's type does not take (``True``, an integer beyond the
                column's width, text that is not a number for an integer key).

        Example:
            ```python
            user = await users.get_one(1)  # a User, never None
            ```
        """
        obj = await self.get(pk, options=options, for_update=for_update)
        if obj is None:
            raise not_found_error(self.model, pk)
        return obj

    async def get_many(
        self,
        pks: Iterable[Any],
        *,
        options: Sequence[ORMOption] = (),
    ) -> builtins.list[ModelT]:
        """The objects with the given primary keys, in the order of *pks*.

        Missing keys are skipped and a repeated key yields its object once (also when
        given in two forms the database takes as equal, such as ``1`` and ``"1"``).
        Always queries, with one ``SELECT ... WHERE pk IN (...)`` per 500 keys.

        Example:
            ```python
            users_by_order = await users.get_many([3, 1, 2])  # [u3, u1, u2]
            ```
        """
        idents: dict[tuple[Any, ...], None] = {}
        for pk in pks:
            idents[self._identity(pk)] = None
        wanted = builtins.list(idents)
        if not wanted:
            return []
        cols = self._pk_attrs()
        found: dict[tuple[Any, ...], ModelT] = {}
        for start in range(0, len(wanted), _GET_MANY_CHUNK):
            chunk = wanted[start : start + _GET_MANY_CHUNK]
            if len(cols) == 1:
                criterion = cols[0].in_([ident[0] for ident in chunk])
            else:
                criterion = tuple_(*cols).in_(chunk)
            stmt = select(self.model).where(criterion)
            if options:
                stmt = stmt.options(*options)
            for obj in (await self.session.scalars(stmt)).unique():
                identity = inspect(obj).identity
                if identity is not None:
                    found[tuple(identity)] = obj
        result: dict[int, ModelT] = {}
        for ident in wanted:
            hit = found.get(ident)
            if hit is not None:
                result.setdefault(id(hit), hit)
        return builtins.list(result.values())

    async def find_one(
        self,
        *where: Where,
        options: Sequence[ORMOption] = (),
        for_update: bool = False,
        **filters: Any,
    ) -> ModelT | None:
        """The one object matching the criteria, or ``None`` when none does.

        Args:
            *where: SQLAlchemy boolean expressions.
            options: Loader options.
            for_update: Lock the matching row until the transaction ends (``SELECT ...
                FOR UPDATE``; ignored by SQLite), as for a row found by a unique key.
            **filters: ``field=value`` and lookups.

        Raises:
            MultipleResultsError: More than one row matches.
            InvalidFieldError: An unknown field or lookup, or a value its column's type
                does not take.

        Example:
            ```python
            user = await users.find_one(email="ann@example.com")
            locked = await users.find_one(email="ann@example.com", for_update=True)
            ```
        """
        stmt = self._select(where, filters, limit=2, options=options, for_update=for_update)
        return one_or_none(
            self.model, self._unique(await self.session.scalars(stmt), options).all()
        )

    async def list(
        self,
        *where: Where,
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        options: Sequence[ORMOption] = (),
        for_update: bool = False,
        **filters: Any,
    ) -> builtins.list[ModelT]:
        """The objects matching the criteria.

        Args:
            *where: SQLAlchemy boolean expressions, such as ``User.id > 10``.
            order_by: ``"name"``, ``"-created_at"``, column expressions, or a sequence.
                Without it the database's order applies (unspecified). NULL sorts
                as the greatest value on every database: last ascending, first
                descending.
            limit: At most this many rows.
            offset: Skip this many rows first.
            options: Loader options.
            for_update: Lock the selected rows (ignored by SQLite).
            **filters: ``field=value`` and lookups such as ``name__ilike="a%"``.

        Raises:
            InvalidFieldError: An unknown field, lookup or order key, a value its
                column's type does not take, or a negative limit or offset.

        Example:
            ```python
            recent = await users.list(User.id > 100, order_by="-id", limit=10)
            anns = await users.list(name="Ann", email__is_null=False)
            ```
        """
        stmt = self._select(
            where,
            filters,
            order_by=order_by,
            limit=limit,
            offset=offset,
            options=options,
            for_update=for_update,
        )
        return builtins.list(self._unique(await self.session.scalars(stmt), options).all())

    async def count(self, *where: Where, **filters: Any) -> int:
        """How many rows match the criteria.

        Example:
            ```python
            n = await users.count(name__like="A%")
            ```
        """
        criteria = compile_where(self.model, where, filters, dialect=self._dialect())
        stmt = select(func.count()).select_from(self.model).where(*criteria)
        return int((await self.session.execute(stmt)).scalar_one())

    async def exists(self, *where: Where, **filters: Any) -> bool:
        """Whether at least one row matches the criteria.

        Example:
            ```python
            taken = await users.exists(email="ann@example.com")
            ```
        """
        criteria = compile_where(self.model, where, filters, dialect=self._dialect())
        stmt = select(literal(1)).select_from(self.model).where(*criteria).limit(1)
        return (await self.session.execute(stmt)).first() is not None

    async def paginate(
        self,
        *where: Where,
        limit: int,
        offset: int = 0,
        order_by: OrderBy = None,
        options: Sequence[ORMOption] = (),
        **filters: Any,
    ) -> Page[ModelT]:
        """One page of the matching objects and the total count (offset pagination).

        The primary key is appended to *order_by* (and is the whole ordering without
        it), so pages are stable when sort values tie. NULL sorts as in `list`: last
        ascending, first descending. The count query is skipped when
        the page itself shows the total (a short, non-empty page, or a short first page).

        Raises:
            InvalidFieldError: ``limit`` below 1, a negative ``offset``, or an unknown
                field, lookup or order key.

        Example:
            ```python
            page = await users.paginate(limit=20, offset=40, order_by="name")
            page.items, page.total, page.has_next, page.pages
            ```
        """
        check_window(self.model, limit=limit, offset=offset)
        check_page_size(self.model, limit)
        ordering = self._stable_order(order_by)
        items = await self.list(
            *where, order_by=ordering, limit=limit, offset=offset, options=options, **filters
        )
        if len(items) < limit and (items or offset == 0):
            total = offset + len(items)
        else:
            total = await self.count(*where, **filters)
        return Page(items=items, total=total, limit=limit, offset=offset)

    async def stream(
        self,
        *where: Where,
        order_by: OrderBy = None,
        chunk_size: int = 1000,
        options: Sequence[ORMOption] = (),
        **filters: Any,
    ) -> AsyncIterator[ModelT]:
        """Iterate over the matching objects, fetching *chunk_size* rows at a time.

        Uses a server-side cursor where the driver has one (asyncpg, aiomysql), so the
        result is never held in memory at once. The connection is busy until the
        iteration ends: wrap it in ``contextlib.aclosing`` when breaking out early.
        Loader options that join collections (``joinedload`` of a list) cannot be used.

        Raises:
            InvalidFieldError: ``chunk_size`` below 1, or an unknown field, lookup or
                order key (raised at the first iteration).

        Example:
            ```python
            async with aclosing(users.stream(order_by="id", chunk_size=500)) as rows:
                async for user in rows:
                    export(user)
            ```
        """
        async for chunk in self.stream_chunks(
            *where, order_by=order_by, chunk_size=chunk_size, options=options, **filters
        ):
            for obj in chunk:
                yield obj

    async def stream_chunks(
        self,
        *where: Where,
        order_by: OrderBy = None,
        chunk_size: int = 1000,
        options: Sequence[ORMOption] = (),
        **filters: Any,
    ) -> AsyncIterator[builtins.list[ModelT]]:
        """Like `stream`, but yields lists of up to *chunk_size* objects.

        Example:
            ```python
            async for batch in users.stream_chunks(chunk_size=1000):
                await index(batch)
            ```
        """
        check_stream_chunk_size(self.model, chunk_size)
        stmt = self._select(where, filters, order_by=order_by, options=options)
        stmt = stmt.execution_options(yield_per=chunk_size)
        result = await self.session.stream_scalars(stmt)
        try:
            async for partition in result.partitions(chunk_size):
                yield builtins.list(partition)
        finally:
            await result.close()

    # ----------------------------------------------------------------------- keyset

    async def paginate_cursor(
        self,
        *where: Where,
        limit: int,
        order_by: OrderBy = None,
        after: str | None = None,
        before: str | None = None,
        options: Sequence[ORMOption] = (),
        cursor_scope: str | None = None,
        **filters: Any,
    ) -> CursorPage[ModelT]:
        """One page of a keyset-paginated query.

        *order_by* may name mapped columns of the model only (strings, attributes, or
        their ``asc()`` / ``desc()``); the primary key is always appended as the final
        tie-breaker, so rows with equal sort values are never skipped or repeated. NULL
        sort values are supported: they sort after every value ascending and before
        every value descending, on every database. Where a database orders a column
        by its stored text (date and time columns on SQLite, native enums on MySQL /
        MariaDB) the page follows that order and the cursor carries the text, so
        values the database wrote itself (``CURRENT_TIMESTAMP``) page correctly too.

        Args:
            *where: SQLAlchemy boolean expressions.
            limit: The page size (at least 1).
            order_by: The ordering; the primary key when omitted.
            after: A ``next_cursor``: return the rows that follow it.
            before: A ``previous_cursor``: return the rows that precede it.
            options: Loader options.
            cursor_scope: Binds the cursors to a scope: a cursor made with another scope (or
                none) is rejected. A cursor names the model and ordering only, not the
                filters; when the filters come from the caller, pass them here (for
                example ``cursor_scope=f"user:{user_id}"``) so that a cursor of one user's
                listing cannot page through another's.
            **filters: ``field=value`` and lookups.

        Raises:
            InvalidCursorError: A cursor that is malformed, edited, or made for another
                model, ordering or scope.
            InvalidFieldError: Both ``after`` and ``before``; a bad ``limit``; an order
                key that is not a mapped column; an unknown field or lookup; a
                ``cursor_scope`` that is not a ``str``.

        Example:
            ```python
            page = await orders.paginate_cursor(order_by="-created_at", limit=20)
            older = await orders.paginate_cursor(
                order_by="-created_at", limit=20, after=page.next_cursor
            )
            # A cursor bound to one user's listing is refused for another user's.
            mine = await orders.paginate_cursor(
                order_by="-created_at", limit=20, user_id=7, cursor_scope="user:7"
            )
            ```
        """
        model = self.model
        dialect = self._dialect()
        columns = keyset_columns(model, order_by, dialect)
        request = KeysetRequest.parse(
            model,
            order_by,
            limit=limit,
            after=after,
            before=before,
            scope=cursor_scope,
            secret=self.cursor_secret,
            types=lambda key: columns[key].python_type,
            dialect=dialect,
        )
        stmt = keyset_select(
            model,
            builtins.list(columns.values()),
            compile_where(model, where, filters, dialect=dialect),
            position=request.position,
            backwards=request.backwards,
            limit=limit,
        )
        if options:
            stmt = stmt.options(*options)
        rows = (await self.session.execute(stmt)).unique().all()
        return request.page(rows, item=_first, values=_rest)


def _first(row: Any) -> Any:
    return row[0]


def _rest(row: Any) -> Any:
    return row[1:]
