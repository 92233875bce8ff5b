"""The paged and streamed reads of `InMemoryRepository`."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from sqla_uow._filters import check_page_size, check_stream_chunk_size, check_window
from sqla_uow._locks import ForUpdate, lock_request
from sqla_uow._pagination import CursorPage, KeysetRequest, Page, check_scope
from sqla_uow._typing import ModelT

from ._expressions import sort_instances
from ._store import FakeStore

__all__ = ["FakePagesMixin"]


def _compare(a: Any, b: Any, *, descending: bool) -> int:
    """Compare two sort values; NULL is the greatest value (as in every ordering)."""
    if a is None or b is None:
        result = (a is None) - (b is None)
    else:
        result = (a > b) - (a < b)
    return -result if descending else result


def _same(obj: Any) -> Any:
    return obj


class FakePagesMixin(FakeStore[ModelT]):
    """`paginate`, `stream`, `stream_chunks` and `paginate_cursor` of `InMemoryRepository`."""

    cursor_secret: ClassVar[bytes | None]

    async def paginate(
        self,
        *where: Any,
        limit: int,
        offset: int = 0,
        order_by: Any = None,
        options: Sequence[Any] = (),
        **filters: Any,
    ) -> Page[ModelT]:
        """One page of the matching instances and the total count (offset pagination).

        The primary key breaks ties, as in `AsyncRepository.paginate`.

        Raises:
            InvalidFieldError: ``limit`` below 1, a negative ``offset``, or an unknown
                field, lookup or order key.

        Example:
            ```python
            page = await users.paginate(limit=20, offset=40, order_by="name")
            ```
        """
        check_window(self.model, limit=limit, offset=offset)
        check_page_size(self.model, limit)
        found = self._fake_select(where, filters, order_by)
        return Page(
            items=found[offset : offset + limit], total=len(found), limit=limit, offset=offset
        )

    async def stream(
        self,
        *where: Any,
        order_by: Any = None,
        chunk_size: int = 1000,
        options: Sequence[Any] = (),
        for_update: bool | ForUpdate = False,
        **filters: Any,
    ) -> AsyncIterator[ModelT]:
        """Iterate over the matching instances.

        Raises:
            InvalidFieldError: ``chunk_size`` below 1, or an unknown field, lookup or
                order key (raised at the first iteration).

        Example:
            ```python
            async for user in users.stream(order_by="id"):
                ...
            ```
        """
        async for chunk in self.stream_chunks(
            *where, order_by=order_by, chunk_size=chunk_size, for_update=for_update, **filters
        ):
            for obj in chunk:
                yield obj

    async def stream_chunks(
        self,
        *where: Any,
        order_by: Any = None,
        chunk_size: int = 1000,
        options: Sequence[Any] = (),
        for_update: bool | ForUpdate = False,
        **filters: Any,
    ) -> AsyncIterator[builtins.list[ModelT]]:
        """Like `stream`, but yields lists of up to *chunk_size* instances.

        Example:
            ```python
            async for batch in users.stream_chunks(chunk_size=100):
                ...
            ```
        """
        check_stream_chunk_size(self.model, chunk_size)
        found = self._fake_select(where, filters, order_by)  # checked before the lock
        lock_request(for_update, self.model)
        for start in range(0, len(found), chunk_size):
            yield found[start : start + chunk_size]

    async def paginate_cursor(
        self,
        *where: Any,
        limit: int,
        order_by: Any = None,
        after: str | None = None,
        before: str | None = None,
        options: Sequence[Any] = (),
        cursor_scope: str | None = None,
        **filters: Any,
    ) -> CursorPage[ModelT]:
        """One page of a keyset-paginated query, with the cursors `AsyncRepository` makes.

        The primary key is appended as the final tie-breaker; NULL sorts as the
        greatest value. Cursors are made and checked by the same code as those of
        `AsyncRepository`: the same model and ordering give interchangeable cursors,
        except for the columns a database orders by their stored text (dates and times
        on SQLite, native enums on MySQL / MariaDB).

        ``cursor_scope`` binds the cursors to a scope, as on `AsyncRepository.paginate_cursor`.

        Raises:
            InvalidCursorError: A cursor that is malformed, edited, or made for another
                model, ordering or scope.
            InvalidFieldError: Both ``after`` and ``before``; a bad ``limit``; an order
                key that is not a mapped column; an unknown field or lookup; a
                ``cursor_scope`` that is not a ``str``.

        Example:
            ```python
            page = await users.paginate_cursor(order_by="-id", limit=20)
            following = await users.paginate_cursor(
                order_by="-id", limit=20, after=page.next_cursor
            )
            ```
        """
        scope = self._fake_scope()
        if scope is not None:
            check_scope(self.model, cursor_scope)
            cursor_scope = scope.scope.cursor_scope(cursor_scope)
        request = KeysetRequest.parse(
            self.model,
            order_by,
            limit=limit,
            after=after,
            before=before,
            scope=cursor_scope,
            secret=self.cursor_secret,
        )
        keys = request.keys

        def values_of(obj: Any) -> builtins.list[Any]:
            return [getattr(obj, name) for name, _ in keys]

        def compare(a: Sequence[Any], b: Sequence[Any]) -> int:
            for (_, descending), x, y in zip(keys, a, b, strict=True):
                result = _compare(x, y, descending=descending)
                if result:
                    return result
            return 0

        found = sort_instances(self._fake_select(where, filters), keys)
        position = request.position
        if request.backwards:
            found.reverse()
        if position is not None:
            sign = -1 if request.backwards else 1
            found = [obj for obj in found if compare(values_of(obj), position) * sign > 0]
        return request.page(found[: limit + 1], item=_same, values=values_of)
