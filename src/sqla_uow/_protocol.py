"""`Repository`: the repository API as a protocol, met by the real and the fake repository."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._locks import ForUpdate
from ._pagination import CursorPage, Page
from ._typing import ModelT

if TYPE_CHECKING:
    import sys

    from sqlalchemy import ColumnElement

    if sys.version_info >= (3, 11):
        from typing import Self
    else:
        from typing_extensions import Self

    from ._where import Where

__all__ = ["Repository"]


class Repository(Protocol[ModelT]):
    """The async repository API of one model, as a type.

    Both `AsyncRepository` and `sqla_uow.testing.InMemoryRepository` have these methods,
    so code typed with ``Repository[User]`` takes either: annotate services with it,
    hand them the real repository in production and the in-memory fake in unit tests.
    The semantics of each method are those documented on `AsyncRepository`.

    Example:
        ```python
        from sqla_uow import Repository

        class SignupService:
            def __init__(self, users: Repository[User]) -> None:
                self.users = users

            async def signup(self, email: str) -> User:
                return await self.users.create(email=email)

        SignupService(UserRepository(session))  # in production
        SignupService(InMemoryRepository(User))  # in a unit test
        ```
    """

    @property
    def model(self) -> type[ModelT]:
        """The mapped class."""
        ...

    async def get(
        self, pk: Any, *, options: Sequence[Any] = (), for_update: bool | ForUpdate = False
    ) -> ModelT | None:
        """The object with primary key *pk*, or ``None``."""
        ...

    async def get_one(
        self, pk: Any, *, options: Sequence[Any] = (), for_update: bool | ForUpdate = False
    ) -> ModelT:
        """The object with primary key *pk*; `NotFoundError` when there is none."""
        ...

    async def get_many(
        self, pks: Iterable[Any], *, options: Sequence[Any] = ()
    ) -> builtins.list[ModelT]:
        """The objects with the given primary keys, in the order of *pks*."""
        ...

    async def find_one(
        self,
        *where: Where,
        options: Sequence[Any] = (),
        for_update: bool | ForUpdate = False,
        **filters: Any,
    ) -> ModelT | None:
        """The one object matching the criteria, or ``None``."""
        ...

    async def list(
        self,
        *where: Where,
        order_by: Any = None,
        limit: int | None = None,
        offset: int | None = None,
        options: Sequence[Any] = (),
        for_update: bool | ForUpdate = False,
        **filters: Any,
    ) -> builtins.list[ModelT]:
        """The objects matching the criteria."""
        ...

    async def count(self, *where: Where, **filters: Any) -> int:
        """How many rows match the criteria."""
        ...

    async def exists(self, *where: Where, **filters: Any) -> bool:
        """Whether at least one row matches the criteria."""
        ...

    async def paginate(
        self,
        *where: Where,
        limit: int,
        offset: int = 0,
        order_by: Any = None,
        options: Sequence[Any] = (),
        **filters: Any,
    ) -> Page[ModelT]:
        """One page of the matching objects and the total count."""
        ...

    async def paginate_cursor(
        self,
        *where: Where,
        limit: int,
        order_by: Any = None,
        after: str | None = None,
        before: str | None = None,
        options: Sequence[Any] = (),
        cursor_scope: str | None = None,
        **filters: Any,
    ) -> CursorPage[ModelT]:
        """One page of a keyset-paginated query."""
        ...

    def stream(
        self,
        *where: Where,
        order_by: Any = None,
        chunk_size: int = 1000,
        options: Sequence[Any] = (),
        for_update: bool | ForUpdate = False,
        **filters: Any,
    ) -> AsyncIterator[ModelT]:
        """Iterate over the matching objects."""
        ...

    def stream_chunks(
        self,
        *where: Where,
        order_by: Any = None,
        chunk_size: int = 1000,
        options: Sequence[Any] = (),
        for_update: bool | ForUpdate = False,
        **filters: Any,
    ) -> AsyncIterator[builtins.list[ModelT]]:
        """Iterate over the matching objects in lists of up to *chunk_size*."""
        ...

    async def create(self, data: Any = None, /, **values: Any) -> ModelT:
        """Add a new object; returns it with its primary key set."""
        ...

    async def update(self, pk_or_instance: Any, data: Any = None, /, **values: Any) -> ModelT:
        """Assign fields of an object (by primary key or instance)."""
        ...

    async def delete(self, pk_or_instance: Any, *, version: Any = None) -> bool:
        """Delete an object (by primary key or instance); whether a row was deleted.

        With *version*, only when a versioned row is at that version.
        """
        ...

    async def create_many(
        self, rows: Iterable[Any], *, chunk_size: int | None = None
    ) -> builtins.list[ModelT]:
        """Add several new objects; returned in input order."""
        ...

    async def insert_many(self, rows: Iterable[Any], *, chunk_size: int | None = None) -> int:
        """Insert several rows without loading them; the number inserted."""
        ...

    async def update_many(
        self, rows: Iterable[Mapping[str, Any]], *, chunk_size: int | None = None
    ) -> int:
        """Update rows by primary key, each with its own values; the number matched."""
        ...

    async def delete_many(self, pks: Iterable[Any], *, chunk_size: int | None = None) -> int:
        """Delete the rows with these primary keys; the number deleted."""
        ...

    async def delete_where(
        self, *where: ColumnElement[bool], all_rows: bool = False, **filters: Any
    ) -> int:
        """Delete every row matching the criteria; the number deleted."""
        ...

    async def upsert_many(
        self,
        rows: Iterable[Any],
        *,
        on_conflict: Sequence[str],
        update: Sequence[str] | None = None,
        chunk_size: int | None = None,
    ) -> int:
        """Insert rows, or update the row with the same *on_conflict* values."""
        ...

    def scoped(self, *where: Where, **criteria: Any) -> Self:
        """A view of the repository confined to the criteria (see `AsyncRepository.scoped`)."""
        ...

    def including_deleted(self) -> Self:
        """The view that also sees soft-deleted rows."""
        ...

    async def restore(self, pk_or_instance: Any) -> bool:
        """Undo the soft delete of a row; whether one was restored."""
        ...

    async def hard_delete(self, pk_or_instance: Any, *, version: Any = None) -> bool:
        """Delete a row for good, soft-deleted or not; whether one was deleted.

        With *version*, only when a versioned row is at that version.
        """
        ...
