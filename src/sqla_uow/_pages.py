"""`PageMixin`: the paged and streamed reads of `AsyncRepository`."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import database_errors
from ._filters import check_page_size, check_stream_chunk_size, check_window
from ._keyset import keyset_columns, keyset_select
from ._locks import ForUpdate
from ._pagination import CursorPage, KeysetRequest, Page, check_scope
from ._reads import OrderBy, ReadMixin
from ._typing import ModelT
from ._where import Where, compile_where

if TYPE_CHECKING:
    from sqlalchemy.orm.interfaces import ORMOption


__all__ = ["PageMixin"]


class PageMixin(ReadMixin[ModelT]):
    """Pages (offset and cursor) and streams of a repository of ``ModelT``.

    Mixed into `AsyncRepository`, on top of `ReadMixin`, whose statement helpers it uses.
    """

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
        for_update: bool | ForUpdate = False,
        **filters: Any,
    ) -> AsyncIterator[ModelT]:
        """Iterate over the matching objects, fetching *chunk_size* rows at a time.

        Uses a server-side cursor where the driver has one (asyncpg, aiomysql), so the
        result is never held in memory at once. The connection is busy until the
        iteration ends: wrap it in ``contextlib.aclosing`` when breaking out early.
        Loader options that join collections (``joinedload`` of a list) cannot be used.
        ``for_update`` (``True`` or a `ForUpdate`) locks the rows as they are read.

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
            *where,
            order_by=order_by,
            chunk_size=chunk_size,
            options=options,
            for_update=for_update,
            **filters,
        ):
            for obj in chunk:
                yield obj

    async def stream_chunks(
        self,
        *where: Where,
        order_by: OrderBy = None,
        chunk_size: int = 1000,
        options: Sequence[ORMOption] = (),
        for_update: bool | ForUpdate = False,
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
        stmt = self._select(
            where, filters, order_by=order_by, options=options, for_update=for_update
        )
        stmt = stmt.execution_options(yield_per=chunk_size)
        with database_errors(self.model):
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
        criteria = compile_where(model, where, filters, dialect=dialect)
        scope = self._active_scope()
        if scope is not None:
            check_scope(model, cursor_scope)
            cursor_scope = scope.cursor_scope(cursor_scope)
            criteria.extend(scope.criteria)
            options = (*scope.options, *options)
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
            criteria,
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
