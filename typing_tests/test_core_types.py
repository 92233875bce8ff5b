"""Types of the everyday calls of `sqla_uow` (checked by mypy, never executed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import assert_type

from models.shop import Order, User
from sqla_uow import (
    AbstractUnitOfWork,
    AsyncRepository,
    CursorPage,
    ForUpdate,
    Page,
    Propagation,
    SQLAlchemyUnitOfWork,
    TransactionManager,
    current_manager,
    set_default_manager,
    transactional,
    use_default_manager,
)


class UserRepository(AsyncRepository[User]):
    async def get_by_email(self, email: str) -> User | None:
        return await self.find_one(email=email)


class ShopUnitOfWork(SQLAlchemyUnitOfWork):
    users: UserRepository
    orders: AsyncRepository[Order]


async def repository_reads(session: AsyncSession) -> None:
    users = UserRepository(session)
    assert_type(users.model, type[User])
    assert_type(users.session, AsyncSession)
    assert_type(await users.get(1), User | None)
    assert_type(await users.get_one(1), User)
    assert_type(await users.get_many([1, 2]), list[User])
    assert_type(await users.find_one(email="a@example.com"), User | None)
    assert_type(await users.get_by_email("a@example.com"), User | None)
    assert_type(await users.list(User.id > 1, order_by="-id", limit=10), list[User])
    assert_type(await users.count(name="Ann"), int)
    assert_type(await users.exists(name="Ann"), bool)
    page = await users.paginate(limit=20, offset=40, order_by="name")
    assert_type(page, Page[User])
    assert_type(page.items, list[User])
    assert_type(page.total, int)
    cursor_page = await users.paginate_cursor(order_by="-id", limit=20)
    assert_type(cursor_page, CursorPage[User])
    assert_type(cursor_page.next_cursor, str | None)
    assert_type(users.stream(order_by="id"), AsyncIterator[User])
    async for user in users.stream(order_by="id"):
        assert_type(user, User)
    async for chunk in users.stream_chunks(chunk_size=100):
        assert_type(chunk, list[User])
    nowait = ForUpdate(nowait=True, of=User)
    assert_type(await users.get(1, for_update=nowait), User | None)
    assert_type(await users.get_one(1, for_update=True), User)
    assert_type(await users.find_one(id=1, for_update=ForUpdate(key_share=True)), User | None)
    assert_type(await users.list(for_update=ForUpdate(skip_locked=True, of=[User.id])), list[User])
    assert_type(users.stream(for_update=nowait), AsyncIterator[User])
    ForUpdate(True)  # type: ignore[call-arg]
    await users.get(1, for_update="nowait")  # type: ignore[arg-type]

    orders = AsyncRepository(session, model=Order)
    assert_type(orders, AsyncRepository[Order])
    assert_type(await orders.get_one(1), Order)


async def repository_writes(session: AsyncSession) -> None:
    users = UserRepository(session)
    assert_type(await users.create(email="a@example.com", name="A"), User)
    assert_type(await users.create({"email": "b@example.com", "name": "B"}), User)
    assert_type(await users.update(1, name="B"), User)
    assert_type(await users.delete(1), bool)
    assert_type(await users.delete(1, version=3), bool)
    assert_type(await users.create_many([{"email": "c@example.com", "name": "C"}]), list[User])
    assert_type(await users.insert_many([{"email": "d@example.com", "name": "D"}]), int)
    assert_type(await users.update_many([{"id": 1, "name": "E"}]), int)
    assert_type(await users.delete_many([1, 2]), int)
    assert_type(await users.delete_where(name="E"), int)
    assert_type(
        await users.upsert_many([{"email": "e@example.com", "name": "E"}], on_conflict=("email",)),
        int,
    )


async def repository_scopes(session: AsyncSession) -> None:
    users = UserRepository(session)
    assert_type(users.scoped(name="Ann"), UserRepository)
    assert_type(users.scoped(User.id > 1).scoped(status="active"), UserRepository)
    assert_type(users.including_deleted(), UserRepository)
    assert_type(await users.scoped(name="Ann").get_one(1), User)
    assert_type(await users.hard_delete(1), bool)
    assert_type(await users.hard_delete(1, version=3), bool)
    assert_type(await users.restore(1), bool)
    assert_type(users.default_scope(), Mapping[str, Any] | None)
    orders = AsyncRepository(session, model=Order)
    assert_type(orders.scoped(user_id=1), AsyncRepository[Order])


async def unit_of_work(tm: TransactionManager) -> None:
    async with ShopUnitOfWork(tm) as uow:
        assert_type(uow, ShopUnitOfWork)
        assert_type(uow.users, UserRepository)
        assert_type(uow.orders, AsyncRepository[Order])
        assert_type(uow.session, AsyncSession)
        assert_type(await uow.users.get_one(1), User)
        assert_type(await uow.orders.list(user_id=1), list[Order])
        await uow.commit()
    explicit = ShopUnitOfWork(tm, autocommit=False)
    assert_type(explicit.active, bool)
    _base: AbstractUnitOfWork = explicit


async def transactions(tm: TransactionManager) -> None:
    async with tm.transaction() as session:
        assert_type(session, AsyncSession)
    async with tm.transaction(propagation=Propagation.NESTED) as nested:
        assert_type(nested, AsyncSession)
    async with tm.transaction(propagation=Propagation.SUPPORTS) as maybe:
        assert_type(maybe, AsyncSession | None)
    assert_type(tm.session, AsyncSession)
    tm.on_commit(lambda: None)


async def decorators(tm: TransactionManager) -> None:
    @transactional(tm, retries=3)
    async def transfer(source: int, target: int, *, amount: int) -> str:
        return f"{source}->{target}:{amount}"

    assert_type(await transfer(1, 2, amount=3), str)
    # The signature is kept: a wrong call is an error (warn_unused_ignores proves it).
    await transfer(1, 2, 3)  # type: ignore[call-arg]
    await transfer("1", 2, amount=3)  # type: ignore[arg-type]

    @transactional(tm, propagation=Propagation.REQUIRES_NEW, read_only=True, timeout=2.5)
    async def audit() -> None:
        return None

    async with tm.transaction(timeout=2) as session:
        assert_type(session, AsyncSession)
    tm.transaction(timeout="2")  # type: ignore[call-overload]

    _audited: Callable[[], Coroutine[Any, Any, None]] = audit


@transactional
async def register(email: str, *, admin: bool = False) -> User:
    return User(email=email)


class OrderService:
    @transactional(retries=3)
    async def place_order(self, user_id: int, title: str) -> Order:
        return Order(user_id=user_id, title=title)

    @transactional
    async def cancel(self, order_id: int) -> bool:
        return order_id > 0


async def decorators_without_a_manager(tm: TransactionManager) -> None:
    assert_type(await register("a@example.com"), User)
    assert_type(await register("a@example.com", admin=True), User)
    await register(1)  # type: ignore[arg-type]
    await register("a@example.com", True)  # type: ignore[call-arg]

    service = OrderService()
    assert_type(await service.place_order(1, "Book"), Order)
    assert_type(await service.cancel(7), bool)
    await service.place_order("1", "Book")  # type: ignore[arg-type]
    await service.cancel()  # type: ignore[call-arg]
    _unbound: Callable[[OrderService, int, str], Coroutine[Any, Any, Order]] = (
        OrderService.place_order
    )

    @transactional(tm=tm, read_only=True)
    async def report() -> int:
        return 0

    assert_type(await report(), int)

    @transactional()
    async def nothing() -> None:
        return None

    _nothing: Callable[[], Coroutine[Any, Any, None]] = nothing

    assert_type(current_manager(), TransactionManager)
    assert_type(set_default_manager(tm), TransactionManager | None)
    with use_default_manager(tm) as given:
        assert_type(given, TransactionManager | None)
