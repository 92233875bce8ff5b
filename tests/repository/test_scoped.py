"""`repo.scoped(...)` and `default_scope`: every read and write is confined to the scope.

One test per public read and write method shows the scope applies to it; the last class
enumerates the repository's public async methods and fails for one without such a test.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from contextlib import aclosing
from contextvars import ContextVar
from typing import Any, TypeVar

import pytest
from sqlalchemy import ForeignKey, MetaData, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

from sqla_uow import (
    AsyncRepository,
    ConflictError,
    InvalidCursorError,
    InvalidFieldError,
    NotFoundError,
)

pytestmark = pytest.mark.backends("sqlite", "postgresql", "mariadb")


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "scoped_customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int]
    email: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    purchases: Mapped[list[Purchase]] = relationship(back_populates="customer")


class Purchase(Base):
    __tablename__ = "scoped_purchase"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int]
    customer_id: Mapped[int] = mapped_column(ForeignKey("scoped_customer.id"))
    title: Mapped[str] = mapped_column(String(50))
    customer: Mapped[Customer] = relationship(back_populates="purchases")


class CustomerRepository(AsyncRepository[Customer]):
    pass


class PurchaseRepository(AsyncRepository[Purchase]):
    pass


current_shop: ContextVar[int | None] = ContextVar("current_shop", default=None)


class ShopCustomerRepository(AsyncRepository[Customer]):
    def default_scope(self) -> Mapping[str, Any] | None:
        shop = current_shop.get()
        return None if shop is None else {"shop_id": shop}


SCOPE_TESTS: set[str] = set()
"""The repository methods a test below shows the scope on."""

F = TypeVar("F", bound=Callable[..., Any])


def covers(*methods: str) -> Callable[[F], F]:
    def mark(test: F) -> F:
        SCOPE_TESTS.update(methods)
        return test

    return mark


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
def customers(session: AsyncSession) -> CustomerRepository:
    return CustomerRepository(session)


@pytest.fixture
async def seeded(session: AsyncSession, customers: CustomerRepository) -> dict[str, Customer]:
    """Ann and Bob in shop 7, Cat in shop 8."""
    made = await customers.create_many(
        [
            {"shop_id": 7, "email": "ann@x.io", "name": "Ann"},
            {"shop_id": 7, "email": "bob@x.io", "name": "Bob"},
            {"shop_id": 8, "email": "cat@x.io", "name": "Cat"},
        ]
    )
    await session.commit()
    return {obj.name: obj for obj in made}


async def rows(session: AsyncSession) -> list[tuple[Any, ...]]:
    result = await session.execute(
        select(Customer.shop_id, Customer.email, Customer.name).order_by(Customer.email)
    )
    return [tuple(row) for row in result.all()]


class TestReadsSeeOnlyTheScope:
    @covers("get")
    async def test_get_answers_none_for_a_key_outside_the_scope(
        self, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop = customers.scoped(shop_id=7)
        # Both are in the identity map: the scope is checked on the loaded state.
        assert await shop.get(seeded["Ann"].id) is seeded["Ann"]
        assert await shop.get(seeded["Cat"].id) is None
        # Not loaded: the scope is part of the query.
        customers.session.expunge_all()
        assert (await shop.get(seeded["Ann"].id)) is not None
        assert await shop.get(seeded["Cat"].id) is None
        # Loader options and locks always query, with the scope.
        assert await shop.get(seeded["Cat"].id, for_update=True) is None
        loaded = await shop.get(seeded["Bob"].id, options=[selectinload(Customer.purchases)])
        assert loaded is not None
        assert loaded.purchases == []

    async def test_get_with_a_scope_of_expressions_queries(
        self, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop = customers.scoped(Customer.shop_id > 7)
        assert await shop.get(seeded["Ann"].id) is None
        assert await shop.get(seeded["Cat"].id) is seeded["Cat"]

    @covers("get_one")
    async def test_get_one_raises_not_found_outside_the_scope(
        self, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop = customers.scoped(shop_id=8)
        assert (await shop.get_one(seeded["Cat"].id)).name == "Cat"
        with pytest.raises(NotFoundError):
            await shop.get_one(seeded["Ann"].id)

    @covers("get_many")
    async def test_get_many_skips_keys_outside_the_scope(
        self, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        ids = [seeded[name].id for name in ("Cat", "Bob", "Ann")]
        found = await customers.scoped(shop_id=7).get_many(ids)
        assert [obj.name for obj in found] == ["Bob", "Ann"]

    @covers("find_one")
    async def test_find_one_sees_only_the_scope(
        self, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop = customers.scoped(shop_id=7)
        assert await shop.find_one(email="cat@x.io") is None
        assert (await shop.find_one(email="bob@x.io")) is seeded["Bob"]

    @covers("list")
    async def test_list_sees_only_the_scope(
        self, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        names = [obj.name for obj in await customers.scoped(shop_id=7).list(order_by="name")]
        assert names == ["Ann", "Bob"]
        assert await customers.scoped(shop_id=7).list(name="Cat") == []

    @covers("count", "exists")
    async def test_count_and_exists_see_only_the_scope(
        self, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop = customers.scoped(shop_id=8)
        assert await shop.count() == 1
        assert await customers.count() == 3
        assert await shop.exists(name="Cat")
        assert not await shop.exists(name="Ann")

    @covers("paginate")
    async def test_paginate_counts_and_pages_the_scope(
        self, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        page = await customers.scoped(shop_id=7).paginate(limit=1, order_by="name")
        assert [obj.name for obj in page.items] == ["Ann"]
        assert page.total == 2

    @covers("paginate_cursor")
    async def test_paginate_cursor_pages_the_scope_and_binds_its_cursors(
        self, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop7 = customers.scoped(shop_id=7)
        first = await shop7.paginate_cursor(limit=1, order_by="name")
        assert [obj.name for obj in first.items] == ["Ann"]
        assert first.next_cursor is not None
        second = await shop7.paginate_cursor(limit=1, order_by="name", after=first.next_cursor)
        assert [obj.name for obj in second.items] == ["Bob"]
        assert not second.has_next
        with pytest.raises(InvalidCursorError):
            await customers.scoped(shop_id=8).paginate_cursor(
                limit=1, order_by="name", after=first.next_cursor
            )
        with pytest.raises(InvalidCursorError):
            await customers.paginate_cursor(limit=1, order_by="name", after=first.next_cursor)

    @covers("stream", "stream_chunks")
    async def test_stream_and_stream_chunks_see_only_the_scope(
        self, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop = customers.scoped(shop_id=7)
        async with aclosing(shop.stream(order_by="name")) as stream:
            assert [obj.name async for obj in stream] == ["Ann", "Bob"]
        async with aclosing(shop.stream_chunks(order_by="name", chunk_size=1)) as chunks:
            assert [[obj.name for obj in chunk] async for chunk in chunks] == [["Ann"], ["Bob"]]

    async def test_relationship_loads_obey_the_scope_of_the_loaded_model(
        self, session: AsyncSession, customers: CustomerRepository
    ) -> None:
        ann = await customers.create(shop_id=7, email="ann@x.io", name="Ann")
        purchases = PurchaseRepository(session)
        await purchases.insert_many(
            [
                {"shop_id": 7, "customer_id": ann.id, "title": "lamp"},
                {"shop_id": 8, "customer_id": ann.id, "title": "desk"},
            ]
        )
        await session.commit()
        session.expunge_all()
        loaded = await purchases.scoped(shop_id=7).list(
            options=[selectinload(Purchase.customer).selectinload(Customer.purchases)]
        )
        assert [p.title for p in loaded] == ["lamp"]
        assert [p.title for p in loaded[0].customer.purchases] == ["lamp"]

    async def test_lazy_loads_in_sync_code_obey_the_scope(
        self, session: AsyncSession, customers: CustomerRepository
    ) -> None:
        ann = await customers.create(shop_id=7, email="ann@x.io", name="Ann")
        purchases = PurchaseRepository(session)
        await purchases.insert_many(
            [
                {"shop_id": 7, "customer_id": ann.id, "title": "lamp"},
                {"shop_id": 8, "customer_id": ann.id, "title": "desk"},
            ]
        )
        await session.commit()
        session.expunge_all()
        (lamp,) = await purchases.scoped(shop_id=7).list()

        def titles(_: Any) -> list[str]:
            return [p.title for p in lamp.customer.purchases]  # two lazy loads

        assert await session.run_sync(titles) == ["lamp"]


class TestWritesStayInTheScope:
    @covers("create")
    async def test_create_fills_in_and_refuses_a_contradicting_value(
        self, session: AsyncSession, customers: CustomerRepository
    ) -> None:
        shop = customers.scoped(shop_id=7)
        dan = await shop.create(email="dan@x.io", name="Dan")
        assert dan.shop_id == 7
        same = await shop.create(Customer(email="eve@x.io", name="Eve", shop_id=7))
        assert same.shop_id == 7
        gus = await shop.create(Customer(email="gus@x.io", name="Gus"))  # filled in
        assert gus.shop_id == 7
        with pytest.raises(InvalidFieldError, match="outside the repository's scope") as caught:
            await shop.create(email="fay@x.io", name="Fay", shop_id=8)
        assert caught.value.field == "shop_id"
        await session.commit()
        assert await rows(session) == [
            (7, "dan@x.io", "Dan"),
            (7, "eve@x.io", "Eve"),
            (7, "gus@x.io", "Gus"),
        ]

    @covers("update")
    async def test_update_finds_only_rows_in_the_scope_and_keeps_them_there(
        self, session: AsyncSession, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop = customers.scoped(shop_id=7)
        with pytest.raises(NotFoundError):
            await shop.update(seeded["Cat"].id, name="Cathy")
        with pytest.raises(NotFoundError):
            await shop.update(seeded["Cat"], name="Cathy")  # an instance of the session
        with pytest.raises(InvalidFieldError, match="outside the repository's scope"):
            await shop.update(seeded["Ann"].id, shop_id=8)
        await shop.update(seeded["Ann"].id, name="Anna", shop_id=7)
        await session.commit()
        assert await rows(session) == [
            (7, "ann@x.io", "Anna"),
            (7, "bob@x.io", "Bob"),
            (8, "cat@x.io", "Cat"),
        ]

    @covers("delete")
    async def test_delete_of_a_key_outside_the_scope_deletes_nothing(
        self, session: AsyncSession, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop = customers.scoped(shop_id=7)
        assert not await shop.delete(seeded["Cat"].id)
        assert not await shop.delete(seeded["Cat"])
        assert await shop.delete(seeded["Bob"])
        await session.commit()
        assert [row[2] for row in await rows(session)] == ["Ann", "Cat"]

    @covers("create_many", "insert_many")
    async def test_create_many_and_insert_many_fill_in_and_refuse(
        self, session: AsyncSession, customers: CustomerRepository
    ) -> None:
        shop = customers.scoped(shop_id=8)
        made = await shop.create_many([{"email": "a@x.io", "name": "A"}])
        assert made[0].shop_id == 8
        assert await shop.insert_many([{"email": "b@x.io", "name": "B", "shop_id": 8}]) == 1
        with pytest.raises(InvalidFieldError, match="row 1: "):
            await shop.create_many(
                [{"email": "c@x.io", "name": "C"}, {"email": "d@x.io", "name": "D", "shop_id": 7}]
            )
        with pytest.raises(InvalidFieldError, match="row 0: "):
            await shop.insert_many([{"email": "e@x.io", "name": "E", "shop_id": 9}])
        await session.commit()
        assert await rows(session) == [(8, "a@x.io", "A"), (8, "b@x.io", "B")]

    @covers("update_many")
    async def test_update_many_leaves_rows_outside_the_scope_unchanged(
        self, session: AsyncSession, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop = customers.scoped(shop_id=7)
        matched = await shop.update_many(
            [{"id": seeded["Ann"].id, "name": "Anna"}, {"id": seeded["Cat"].id, "name": "Cathy"}]
        )
        assert matched == 1
        assert seeded["Cat"].name == "Cat"  # the identity map kept its value too
        with pytest.raises(InvalidFieldError, match="row 0: "):
            await shop.update_many([{"id": seeded["Bob"].id, "shop_id": 8}])
        await session.commit()
        assert [row[2] for row in await rows(session)] == ["Anna", "Bob", "Cat"]

    @covers("delete_many", "delete_where")
    async def test_delete_many_and_delete_where_delete_only_in_the_scope(
        self, session: AsyncSession, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop = customers.scoped(shop_id=7)
        assert await shop.delete_many([seeded["Ann"].id, seeded["Cat"].id]) == 1
        assert await shop.delete_where(name__in=["Bob", "Cat"]) == 1
        with pytest.raises(InvalidFieldError):
            await shop.delete_where()  # the scope is not a criterion of its own
        await session.commit()
        assert [row[2] for row in await rows(session)] == ["Cat"]

    @covers("upsert_many")
    async def test_upsert_many_writes_in_the_scope_and_refuses_a_key_outside(
        self, session: AsyncSession, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop = customers.scoped(shop_id=7)
        written = await shop.upsert_many(
            [{"email": "ann@x.io", "name": "Anna"}, {"email": "dan@x.io", "name": "Dan"}],
            on_conflict=("email",),
        )
        assert written == 2
        with pytest.raises(ConflictError, match="outside the repository's scope") as caught:
            await shop.upsert_many([{"email": "cat@x.io", "name": "Cathy"}], on_conflict=("email",))
        assert caught.value.kind == "unique"
        with pytest.raises(InvalidFieldError):
            await shop.upsert_many(
                [{"email": "cat@x.io", "name": "C", "shop_id": 8}], on_conflict=("email",)
            )
        await session.commit()
        assert await rows(session) == [
            (7, "ann@x.io", "Anna"),
            (7, "bob@x.io", "Bob"),
            (8, "cat@x.io", "Cat"),
            (7, "dan@x.io", "Dan"),
        ]


class TestScopesStackAndCheckTheirCriteria:
    async def test_scopes_stack(
        self, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        shop = customers.scoped(shop_id=7).scoped(name__startswith="B")
        assert [obj.name for obj in await shop.list()] == ["Bob"]
        assert await customers.scoped(shop_id=7).count() == 2  # the outer view is unchanged

    async def test_a_contradicting_or_unknown_criterion_is_refused_before_any_sql(
        self, customers: CustomerRepository
    ) -> None:
        with pytest.raises(InvalidFieldError, match="contradicts"):
            customers.scoped(shop_id=7).scoped(shop_id=8)
        with pytest.raises(InvalidFieldError, match="unknown field 'shop'"):
            customers.scoped(shop=7)
        with pytest.raises(InvalidFieldError):
            customers.scoped(shop_id="seven")

    async def test_a_scoped_view_is_of_the_same_class(self, customers: CustomerRepository) -> None:
        view = customers.scoped(shop_id=7)
        assert type(view) is CustomerRepository
        assert view.session is customers.session


class TestApplyScope:
    async def test_a_subclass_query_is_confined_to_the_scope(
        self, session: AsyncSession, customers: CustomerRepository, seeded: dict[str, Customer]
    ) -> None:
        counted = select(func.count(Customer.id))
        assert await session.scalar(customers.apply_scope(counted)) == 3
        assert await session.scalar(customers.scoped(shop_id=7).apply_scope(counted)) == 2
        token = current_shop.set(8)
        try:
            names = select(Customer.name).order_by(Customer.name)
            found = await session.scalars(ShopCustomerRepository(session).apply_scope(names))
            assert list(found) == ["Cat"]
        finally:
            current_shop.reset(token)

    def test_a_repository_without_a_scope_returns_the_statement_itself(
        self, customers: CustomerRepository
    ) -> None:
        statement = select(Customer)
        assert customers.apply_scope(statement) is statement

    def test_anything_but_a_select_is_refused(self, customers: CustomerRepository) -> None:
        with pytest.raises(TypeError, match="takes a SELECT"):
            customers.apply_scope(Customer.__table__.delete())


class TestDefaultScope:
    async def test_the_default_scope_is_read_per_operation(
        self, session: AsyncSession, seeded: dict[str, Customer]
    ) -> None:
        repo = ShopCustomerRepository(session)
        token = current_shop.set(8)
        try:
            assert [obj.name for obj in await repo.list()] == ["Cat"]
            fay = await repo.create(email="fay@x.io", name="Fay")
            assert fay.shop_id == 8
        finally:
            current_shop.reset(token)
        token = current_shop.set(7)
        try:
            assert await repo.count() == 2
            assert await repo.get(seeded["Cat"].id) is None
        finally:
            current_shop.reset(token)
        assert await repo.count() == 4  # no tenant: no default scope


class TestEveryMethodHasAScopeTest:
    def test_every_public_async_method_of_the_repository_has_a_scope_test(self) -> None:
        methods = {
            name
            for name, member in inspect.getmembers(AsyncRepository)
            if not name.startswith("_")
            and (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member))
        }
        # Soft delete's own methods are shown in test_soft_delete.py.
        missing = methods - SCOPE_TESTS - {"restore", "hard_delete"}
        assert not missing, f"no scope test for {sorted(missing)}"
