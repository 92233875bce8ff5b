"""Types of the test doubles in `sqla_uow.testing` (checked by mypy, never executed)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import assert_type

from models.shop import Order, User
from sqla_uow import AbstractUnitOfWork, AsyncRepository, CursorPage, Page, Repository
from sqla_uow.testing import FakeUnitOfWork, InMemoryRepository


class FakeUserRepository(InMemoryRepository[User]):
    async def get_by_email(self, email: str) -> User | None:
        return await self.find_one(email=email)


class FakeShopUnitOfWork(FakeUnitOfWork):
    users: FakeUserRepository
    orders: InMemoryRepository[Order]


async def repository_calls() -> None:
    users = InMemoryRepository(User)
    assert_type(users, InMemoryRepository[User])
    assert_type(await users.get(1), User | None)
    assert_type(await users.get_one(1), User)
    assert_type(await users.get_many([1, 2]), list[User])
    assert_type(await users.find_one(email="a@example.com"), User | None)
    assert_type(await users.list(User.id > 1, order_by="-id", limit=10), list[User])
    assert_type(await users.count(name="Ann"), int)
    assert_type(await users.exists(name="Ann"), bool)
    assert_type(await users.paginate(limit=10), Page[User])
    assert_type(await users.create(email="a@example.com", name="A"), User)
    assert_type(await users.create_many([{"email": "b@example.com", "name": "B"}]), list[User])
    assert_type(await users.update(1, name="B"), User)
    assert_type(await users.update_many([{"id": 1, "name": "C"}]), int)
    assert_type(await users.delete(1), bool)
    assert_type(await users.delete(1, version=3), bool)
    assert_type(await users.delete_many([1]), int)
    assert_type(await users.delete_where(name="C"), int)
    assert_type(await users.upsert_many([{"email": "c@example.com"}], on_conflict=("email",)), int)
    assert_type(users.rows, list[User])
    async for user in users.stream(order_by="id"):
        assert_type(user, User)

    assert_type(InMemoryRepository(model=Order), InMemoryRepository[Order])
    assert_type(users.model, type[User])
    page = await users.paginate_cursor(order_by="-id", limit=10)
    assert_type(page, CursorPage[User])
    async for chunk in users.stream_chunks(chunk_size=10):
        assert_type(chunk, list[User])

    fake = FakeUserRepository()
    assert_type(await fake.get_one(1), User)
    assert_type(fake.scoped(name="Ann"), FakeUserRepository)
    assert_type(users.including_deleted(), InMemoryRepository[User])
    assert_type(await users.scoped(name="Ann").hard_delete(1), bool)
    assert_type(await fake.get_by_email("a@example.com"), User | None)


async def unit_of_work_calls() -> None:
    uow = FakeShopUnitOfWork()
    async with uow:
        assert_type(uow.users, FakeUserRepository)
        assert_type(uow.orders, InMemoryRepository[Order])
    async with uow as entered:
        assert_type(entered, FakeShopUnitOfWork)
        assert_type(await entered.orders.get_one(1), Order)
        await entered.commit()
    assert_type(uow.committed, bool)
    assert_type(uow.rolled_back, bool)
    _base: AbstractUnitOfWork = uow


class SignupService:
    """A service typed against the protocol takes the real and the fake repository."""

    def __init__(self, users: Repository[User]) -> None:
        self.users = users

    async def signup(self, email: str) -> User:
        return await self.users.create(email=email, name=email)


class UserRepository(AsyncRepository[User]):
    pass


async def protocol_calls(session: AsyncSession) -> None:
    real: Repository[User] = UserRepository(session)
    fake: Repository[User] = InMemoryRepository(User)
    subclass: Repository[User] = FakeUserRepository()
    for users in (real, fake, subclass):
        assert_type(await users.get_one(1), User)
        assert_type(await users.list(order_by="-id", limit=10), list[User])
        assert_type(await users.paginate_cursor(limit=10), CursorPage[User])
        async for user in users.stream():
            assert_type(user, User)
    SignupService(UserRepository(session))
    SignupService(InMemoryRepository(User))
    # The fake implements the protocol; it is not an AsyncRepository (checked: an error).
    as_real: AsyncRepository[User] = InMemoryRepository(User)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    assert_type(await as_real.get_one(1), User)
