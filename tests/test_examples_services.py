"""The shop example's unit-of-work services, tested on the in-memory fakes of sqla_uow.testing.

No database: the services get a `FakeUnitOfWork` whose repositories keep rows in memory
and really roll back, so each test checks the data a service left behind. The services
run inside the unit of work their caller opened (in the app, the request's), so each
test opens the fake around the call.
(`create_user_with_order` and `OrderService` need a `TransactionManager`; the API tests
cover them on real databases.)
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, cast

import pytest

import _shop  # noqa: F401  (puts examples/ on sys.path)
from shop import services
from shop.filters import UserFilters
from shop.models import Order, User
from shop.repositories import OrderSummary, current_shop, in_shop
from shop.schemas import UserCreate
from shop.uow import ShopUnitOfWork
from sqla_uow import ConflictError, CursorPage, InvalidFieldError, NotFoundError
from sqla_uow.testing import FakeUnitOfWork, InMemoryRepository


class FakeOrderRepository(InMemoryRepository[Order]):
    """`OrderRepository`'s scope and queries, answered from memory."""

    def default_scope(self) -> Mapping[str, Any]:
        return {"shop_id": current_shop.get()}

    async def list_for_user(
        self,
        user_id: int,
        *,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> CursorPage[Order]:
        return await self.paginate_cursor(
            order_by=("-created_at", "-id"),
            limit=limit,
            after=after,
            before=before,
            user_id=user_id,
            cursor_scope=f"user:{user_id}",
        )

    async def summary_for_user(self, user_id: int) -> OrderSummary:
        prices = [order.price for order in await self.list(user_id=user_id)]
        if not prices:
            return OrderSummary(count=0, total=Decimal("0.00"), average=None)
        total = sum(prices, Decimal("0.00"))
        return OrderSummary(count=len(prices), total=total, average=total / len(prices))


class FakeUserRepository(InMemoryRepository[User]):
    """`UserRepository`'s queries, answered from memory."""

    async def get_by_email(self, email: str) -> User | None:
        return await self.find_one(email=email)


class FakeShopUnitOfWork(FakeUnitOfWork):
    users: FakeUserRepository
    orders: FakeOrderRepository


@pytest.fixture
def fake() -> FakeShopUnitOfWork:
    """The fake unit of work, for assertions on what the services did."""
    return FakeShopUnitOfWork()


@pytest.fixture
def uow(fake: FakeShopUnitOfWork) -> ShopUnitOfWork:
    """The same fake, typed as what the services take: it has the same interface."""
    return cast(ShopUnitOfWork, fake)


def stored_users(fake: FakeShopUnitOfWork) -> list[User]:
    """The users the fake holds, as a database table would after the service returned."""
    users: list[User] = fake.repositories["users"].rows
    return users


def stored_orders(fake: FakeShopUnitOfWork) -> list[Order]:
    """Every order the fake holds, of every shop."""
    orders: list[Order] = fake.repositories["orders"].rows
    return orders


def emails(fake: FakeShopUnitOfWork) -> list[str]:
    return [user.email for user in stored_users(fake)]


async def add_user(uow: ShopUnitOfWork, email: str, name: str = "Someone") -> User:
    async with uow:
        return await services.register_user(uow, UserCreate(email=email, name=name))


async def add_orders(uow: ShopUnitOfWork, user: User, *prices: str) -> list[Order]:
    async with uow:
        return [
            await uow.orders.create(user_id=user.id, title=f"Order {i}", price=Decimal(price))
            for i, price in enumerate(prices)
        ]


class TestRegisterUser:
    async def test_commits_the_new_user(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")

        assert fake.committed
        assert ann.id is not None
        assert ann.is_active
        assert emails(fake) == ["ann@example.com"]

    async def test_a_taken_email_raises_conflict_and_rolls_back(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        await add_user(uow, "ann@example.com", "Ann")

        with pytest.raises(ConflictError) as caught:
            await add_user(uow, "ann@example.com", "Ann again")

        assert caught.value.kind == "unique"
        assert fake.rolled_back
        assert not fake.committed
        assert [user.name for user in stored_users(fake)] == ["Ann"]


class TestImportUsers:
    async def test_creates_every_user(self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork) -> None:
        batch = [UserCreate(email=f"u{i}@example.com", name=f"U{i}") for i in range(3)]

        async with uow:
            assert await services.import_users(uow, batch) == 3

        assert emails(fake) == ["u0@example.com", "u1@example.com", "u2@example.com"]

    async def test_one_taken_email_rejects_the_whole_batch(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        await add_user(uow, "ann@example.com", "Ann")
        batch = [
            UserCreate(email="bob@example.com", name="Bob"),
            UserCreate(email="ann@example.com", name="Ann again"),
        ]

        with pytest.raises(ConflictError):
            async with uow:
                await services.import_users(uow, batch)

        assert emails(fake) == ["ann@example.com"]

    async def test_update_existing_renames_and_adds(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        await add_user(uow, "ann@example.com", "Ann")
        batch = [
            UserCreate(email="ann@example.com", name="Ann Smith"),
            UserCreate(email="bob@example.com", name="Bob"),
        ]

        async with uow:
            await services.import_users(uow, batch, update_existing=True)

        assert [(u.email, u.name) for u in stored_users(fake)] == [
            ("ann@example.com", "Ann Smith"),
            ("bob@example.com", "Bob"),
        ]


class TestChangeUsers:
    async def test_deactivate_marks_the_user_inactive(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")

        async with uow:
            await services.deactivate_user(uow, ann.id)

        assert fake.committed
        assert [user.is_active for user in stored_users(fake)] == [False]

    async def test_deactivate_raises_not_found_for_an_unknown_id(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        with pytest.raises(NotFoundError):
            async with uow:
                await services.deactivate_user(uow, 42)

    async def test_update_refuses_an_unknown_field_and_changes_nothing(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")
        changes: dict[str, Any] = {"name": "Annie", "nickname": "A"}

        with pytest.raises(InvalidFieldError) as caught:
            async with uow:
                await services.update_user(uow, ann.id, changes)

        assert caught.value.field == "nickname"
        assert [user.name for user in stored_users(fake)] == ["Ann"]

    async def test_delete_raises_not_found_for_an_unknown_id(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        with pytest.raises(NotFoundError):
            async with uow:
                await services.delete_user(uow, 42)

    async def test_delete_marks_the_user_deleted_and_keeps_the_orders(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")
        await add_user(uow, "bob@example.com", "Bob")
        await add_orders(uow, ann, "5.00")

        async with uow:
            await services.delete_user(uow, ann.id)

        assert [(u.email, u.deleted_at is not None) for u in stored_users(fake)] == [
            ("ann@example.com", True),
            ("bob@example.com", False),
        ]
        assert [order.user_id for order in stored_orders(fake)] == [ann.id]
        with pytest.raises(NotFoundError):
            async with uow:
                await services.get_user(uow, ann.id)
        with pytest.raises(NotFoundError):
            async with uow:
                await services.delete_user(uow, ann.id)

    async def test_restore_brings_a_deleted_user_back(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")
        async with uow:
            await services.delete_user(uow, ann.id)

        async with uow:
            restored = await services.restore_user(uow, ann.id)

        assert (restored.id, restored.deleted_at) == (ann.id, None)
        with pytest.raises(NotFoundError):  # a live user is not restored
            async with uow:
                await services.restore_user(uow, ann.id)

    async def test_purge_deletes_a_deleted_user_for_good(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")
        await add_user(uow, "bob@example.com", "Bob")
        async with uow:
            await services.delete_user(uow, ann.id)

        async with uow:
            await services.purge_user(uow, ann.id)

        assert emails(fake) == ["bob@example.com"]
        with pytest.raises(NotFoundError):
            async with uow:
                await services.purge_user(uow, ann.id)


class TestReadUsers:
    async def test_list_orders_pages_newest_first(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")
        placed = await add_orders(uow, ann, "1", "2", "3")

        async with uow:
            first = await services.list_orders(uow, ann.id, limit=2)
        async with uow:
            second = await services.list_orders(uow, ann.id, limit=2, cursor=first.next_cursor)

        assert [o.id for o in [*first.items, *second.items]] == [o.id for o in placed[::-1]]
        assert second.next_cursor is None

    async def test_list_orders_pages_back_with_the_previous_cursor(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")
        await add_orders(uow, ann, "1", "2", "3")
        async with uow:
            first = await services.list_orders(uow, ann.id, limit=2)
            second = await services.list_orders(uow, ann.id, limit=2, cursor=first.next_cursor)
            back = await services.list_orders(uow, ann.id, limit=2, before=second.previous_cursor)

        assert [o.id for o in back.items] == [o.id for o in first.items]

    async def test_list_orders_raises_not_found_for_an_unknown_user(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        with pytest.raises(NotFoundError):
            async with uow:
                await services.list_orders(uow, 42, limit=2)

    async def test_profile_has_the_orders_and_their_summary(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")
        await add_orders(uow, ann, "10.00", "20.50")

        async with uow:
            profile = await services.user_profile(uow, ann.id)

        assert profile.user is ann
        assert [order.price for order in profile.orders] == [Decimal("10.00"), Decimal("20.50")]
        assert profile.summary.count == 2
        assert profile.summary.total == Decimal("30.50")

    async def test_list_users_filters_and_sorts_as_the_filter_set_says(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        for name in ("Ann", "Bob", "Anna", "Al"):
            await add_user(uow, f"{name.lower()}@example.com", name)
        filters = UserFilters.from_query({"name__istartswith": "an", "order_by": "-name"})

        async with uow:
            page = await services.list_users(uow, filters, limit=1, offset=0)

        assert [user.name for user in page.items] == ["Anna"]
        assert page.total == 2

    async def test_list_users_without_filters_lists_everyone_by_id(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        added = [await add_user(uow, f"{name}@example.com") for name in ("cy", "bo", "al")]

        async with uow:
            page = await services.list_users(uow, limit=10, offset=0)

        assert [user.id for user in page.items] == [user.id for user in added]


class TestOrdersOfAShop:
    async def test_a_new_order_belongs_to_the_current_shop(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")
        await add_orders(uow, ann, "1.00")
        with in_shop(2):
            await add_orders(uow, ann, "2.00")

        assert [(o.shop_id, o.price) for o in stored_orders(fake)] == [
            (1, Decimal("1.00")),
            (2, Decimal("2.00")),
        ]

    async def test_another_shops_orders_are_missing(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")
        [mine] = await add_orders(uow, ann, "1.00")
        with in_shop(2):
            [theirs] = await add_orders(uow, ann, "2.00")

        async with uow:
            page = await services.list_orders(uow, ann.id, limit=10)
            profile = await services.user_profile(uow, ann.id)
            assert (await services.get_order(uow, mine.id)).id == mine.id
            with pytest.raises(NotFoundError):
                await services.get_order(uow, theirs.id)
            with pytest.raises(NotFoundError):
                await services.update_order(uow, theirs.id, 1, {"status": "paid"})

        assert [o.id for o in page.items] == [mine.id]
        assert [o.id for o in profile.orders] == [mine.id]
        assert (profile.summary.count, profile.summary.total) == (1, Decimal("1.00"))
        assert theirs.status == "pending"


class TestUpdateOrder:
    async def test_at_the_version_read_it_updates_and_moves_the_version_on(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")
        [order] = await add_orders(uow, ann, "1.00")
        assert order.version == 1

        async with uow:
            updated = await services.update_order(uow, order.id, 1, {"status": "paid"})

        assert (updated.status, updated.version) == ("paid", 2)

    async def test_a_stale_version_is_refused_and_changes_nothing(
        self, uow: ShopUnitOfWork, fake: FakeShopUnitOfWork
    ) -> None:
        ann = await add_user(uow, "ann@example.com", "Ann")
        [order] = await add_orders(uow, ann, "1.00")
        async with uow:
            await services.update_order(uow, order.id, 1, {"status": "paid"})

        with pytest.raises(ConflictError) as caught:
            async with uow:
                await services.update_order(uow, order.id, 1, {"status": "cancelled"})

        assert caught.value.kind == "stale"
        assert [(o.status, o.version) for o in stored_orders(fake)] == [("paid", 2)]
