"""Types of `sqla_uow.filters` and `sqla_uow.ext.fastapi` (checked by mypy, never executed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import assert_type

from models.shop import User
from sqla_uow import (
    AsyncRepository,
    CursorPage,
    Page,
    Repository,
    SQLAlchemyUnitOfWork,
    TransactionManager,
)
from sqla_uow.ext.fastapi import CursorPageResponse, PageResponse, filter_params, unit_of_work
from sqla_uow.filters import FilterParameter, FilterSet
from sqla_uow.testing import InMemoryRepository


class UserFilters(FilterSet[User]):
    fields = {"email": ("eq", "icontains")}  # noqa: RUF012
    order_by = ("email", "id")


class UserRead(BaseModel):
    id: int


class ShopUnitOfWork(SQLAlchemyUnitOfWork):
    users: AsyncRepository[User]


def manager(request: Request) -> TransactionManager:
    tm: TransactionManager = request.app.state.tm
    return tm


UnitOfWork = Annotated[ShopUnitOfWork, unit_of_work(ShopUnitOfWork, manager)]
Filters = Annotated[UserFilters, filter_params(UserFilters)]


async def filterset_calls(
    session: AsyncSession, page: Page[User], cursor: CursorPage[User]
) -> None:
    filters = UserFilters.from_query({"email__icontains": "ann"})
    assert_type(filters, UserFilters)
    assert_type(UserFilters.from_json({"or": [{"email": "a@example.com"}]}), UserFilters)
    assert_type(filters.ordering, tuple[str, ...])
    assert_type(UserFilters.parameters(), list[FilterParameter])

    users = AsyncRepository[User](session, model=User)
    assert_type(await users.list(filters, order_by=filters.ordering), list[User])
    assert_type(await users.count(filters, User.id > 1, name="Ann"), int)
    assert_type(await users.paginate(filters, limit=10), Page[User])
    assert_type(await users.paginate_cursor(filters, limit=10), CursorPage[User])
    fake = InMemoryRepository(User)
    assert_type(await fake.list(filters), list[User])
    typed: Repository[User] = users
    assert_type(await typed.exists(filters), bool)

    assert_type(PageResponse[UserRead].from_page(page), PageResponse[UserRead])
    assert_type(CursorPageResponse[UserRead].from_page(cursor), CursorPageResponse[UserRead])
