"""The test doubles of `sqla_uow.testing`, and their parity with the real repository."""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import MetaData, String, UniqueConstraint, and_, func, not_, or_
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import models.shop
from models.shop import Order, User
from sqla_uow import AsyncRepository, Page, SQLAlchemyUnitOfWork, TransactionManager
from sqla_uow.exceptions import (
    ConflictError,
    IllegalTransactionStateError,
    InvalidCursorError,
    InvalidFieldError,
    MultipleResultsError,
    NotFoundError,
    RollbackOnlyError,
    SqlaUowError,
    TransactionRequiredError,
)
from sqla_uow.testing import FakeUnitOfWork, InMemoryRepository, UnsupportedExpressionError


class FakeOnlyBase(DeclarativeBase):
    """Models the in-memory fakes use alone (no table is created for them)."""


class Membership(FakeOnlyBase):
    __tablename__ = "testing_memberships"
    __table_args__ = (UniqueConstraint("group", "position", name="uq_group_position"),)

    user_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    group: Mapped[str] = mapped_column(String(20), primary_key=True)
    position: Mapped[int]


class UserIn(BaseModel):
    email: str
    name: str
    age: int | None = None


@dataclasses.dataclass
class UserRow:
    email: str
    name: str


class FakeUserRepository(InMemoryRepository[User]):
    async def get_by_email(self, email: str) -> User | None:
        return await self.find_one(email=email)


PEOPLE = [
    {"email": "ann@example.com", "name": "Ann", "age": 31},
    {"email": "bob@example.com", "name": "Bob", "age": 17},
    {"email": "cid@example.org", "name": "Cid", "age": None},
    {"email": "dee@example.org", "name": "dee", "age": 45},
]


async def people() -> InMemoryRepository[User]:
    repo = InMemoryRepository(User)
    await repo.create_many(PEOPLE)
    return repo


class TestConstruction:
    def test_takes_the_model_as_argument(self) -> None:
        assert InMemoryRepository(User).model is User

    def test_infers_the_model_of_a_subclass(self) -> None:
        assert FakeUserRepository().model is User

    def test_accepts_a_model_class_attribute(self) -> None:
        class Orders(InMemoryRepository[Any]):
            model = Order

        assert Orders().model is Order

    def test_refuses_to_guess_a_missing_model(self) -> None:
        with pytest.raises(TypeError, match="needs a model"):
            InMemoryRepository()

    async def test_holds_initial_rows(self) -> None:
        repo = InMemoryRepository(User, rows=[{"email": "a@x.org", "name": "A"}])
        assert [(u.id, u.email) for u in repo.rows] == [(1, "a@x.org")]

    async def test_custom_methods_of_a_fake_subclass_use_the_api(self) -> None:
        repo = FakeUserRepository(rows=PEOPLE)
        found = await repo.get_by_email("bob@example.com")
        assert found is not None
        assert found.name == "Bob"


class TestReads:
    async def test_get_and_get_one_find_by_primary_key(self) -> None:
        repo = await people()
        assert (await repo.get_one(2)).name == "Bob"
        assert await repo.get(99) is None
        with pytest.raises(NotFoundError) as caught:
            await repo.get_one(99)
        assert caught.value.model is User
        assert caught.value.ident == 99

    async def test_get_many_keeps_the_order_of_the_keys_and_skips_missing_ones(self) -> None:
        repo = await people()
        assert [u.id for u in await repo.get_many([3, 1, 42, 3])] == [3, 1]

    async def test_find_one_refuses_several_matches(self) -> None:
        repo = await people()
        assert (await repo.find_one(email="ann@example.com")) is not None
        assert await repo.find_one(email="nobody@example.com") is None
        with pytest.raises(MultipleResultsError):
            await repo.find_one(email__like="%example.com")

    @pytest.mark.parametrize(
        ("filters", "names"),
        [
            ({"age__gte": 18}, ["Ann", "dee"]),
            ({"age__lt": 18}, ["Bob"]),
            ({"age": None}, ["Cid"]),
            ({"age__is_null": False}, ["Ann", "Bob", "dee"]),
            ({"age__ne": 17}, ["Ann", "dee"]),
            ({"id__in": [1, 4, 9]}, ["Ann", "dee"]),
            ({"id__in": []}, []),
            ({"email__like": "%.org"}, ["Cid", "dee"]),
            ({"name__like": "d%"}, ["dee"]),
            ({"name__ilike": "D%"}, ["dee"]),
            ({"name__ne": "Ann", "age__gt": 20}, ["dee"]),
        ],
    )
    async def test_keyword_filters_follow_sql_rules(
        self, filters: dict[str, Any], names: list[str]
    ) -> None:
        repo = await people()
        assert [u.name for u in await repo.list(**filters)] == names

    @pytest.mark.parametrize(
        ("where", "names"),
        [
            ((User.age >= 18,), ["Ann", "dee"]),
            ((User.id.in_([2, 3]),), ["Bob", "Cid"]),
            ((User.id.not_in([2, 3]),), ["Ann", "dee"]),
            ((or_(User.name == "Ann", User.age.is_(None)),), ["Ann", "Cid"]),
            ((and_(User.age > 10, User.age < 40),), ["Ann", "Bob"]),
            ((~(User.age > 20),), ["Bob"]),
            ((not_(User.email.like("%.org")),), ["Ann", "Bob"]),
            ((User.age.is_not(None), User.name != "Bob"), ["Ann", "dee"]),
        ],
    )
    async def test_simple_expressions_are_evaluated(
        self, where: tuple[Any, ...], names: list[str]
    ) -> None:
        repo = await people()
        assert [u.name for u in await repo.list(*where)] == names

    async def test_other_expressions_raise_a_typed_error_naming_the_alternative(self) -> None:
        repo = await people()
        with pytest.raises(UnsupportedExpressionError, match="keyword filters") as caught:
            await repo.list(func.lower(User.name) == "ann")
        assert isinstance(caught.value, NotImplementedError)
        with pytest.raises(UnsupportedExpressionError):
            await repo.count(User.name == User.email)

    @pytest.mark.parametrize(
        ("order_by", "names"),
        [
            ("name", ["Ann", "Bob", "Cid", "dee"]),
            ("-age", ["Cid", "dee", "Ann", "Bob"]),
            ("age", ["Bob", "Ann", "dee", "Cid"]),
            (["-status", "-id"], ["dee", "Cid", "Bob", "Ann"]),
            (User.age.desc(), ["Cid", "dee", "Ann", "Bob"]),
            (User.email, ["Ann", "Bob", "Cid", "dee"]),
        ],
    )
    async def test_order_by_names_and_columns(self, order_by: Any, names: list[str]) -> None:
        repo = await people()
        assert [u.name for u in await repo.list(order_by=order_by)] == names

    async def test_limit_offset_count_exists_and_paginate(self) -> None:
        repo = await people()
        assert [u.id for u in await repo.list(order_by="id", limit=2, offset=1)] == [2, 3]
        assert await repo.count(age__gte=18) == 2
        assert await repo.exists(name="Cid")
        assert not await repo.exists(name="Zed")
        page = await repo.paginate(limit=3, offset=0, order_by="-id")
        assert page == Page(items=page.items, total=4, limit=3, offset=0)
        assert [u.id for u in page.items] == [4, 3, 2]

    async def test_stream_yields_every_match(self) -> None:
        repo = await people()
        assert [u.name async for u in repo.stream(age__is_null=False, order_by="-age")] == [
            "dee",
            "Ann",
            "Bob",
        ]

    async def test_stream_chunks_splits_the_result(self) -> None:
        repo = await people()
        chunks = [[u.id for u in chunk] async for chunk in repo.stream_chunks(chunk_size=3)]
        assert chunks == [[1, 2, 3], [4]]

    async def test_paginate_cursor_walks_forward_and_back(self) -> None:
        repo = await people()
        first = await repo.paginate_cursor(order_by="-age", limit=3)
        assert [u.name for u in first.items] == ["Cid", "dee", "Ann"]
        assert first.next_cursor is not None
        assert first.previous_cursor is None
        second = await repo.paginate_cursor(order_by="-age", limit=3, after=first.next_cursor)
        assert [u.name for u in second.items] == ["Bob"]
        assert second.next_cursor is None
        assert second.previous_cursor is not None
        back = await repo.paginate_cursor(order_by="-age", limit=3, before=second.previous_cursor)
        assert [u.name for u in back.items] == ["Cid", "dee", "Ann"]
        with pytest.raises(InvalidCursorError):
            await repo.paginate_cursor(order_by="name", limit=3, after=first.next_cursor)

    @pytest.mark.parametrize(
        ("call", "field"),
        [
            (lambda r: r.list(emial="x"), "emial"),
            (lambda r: r.count(age__between=1), "age__between"),
            (lambda r: r.list(order_by="-agee"), "-agee"),
            (lambda r: r.list(limit=-1), "limit"),
            (lambda r: r.exists(id__in="12"), "id__in"),
            (lambda r: r.find_one(age__is_null="yes"), "age__is_null"),
        ],
    )
    async def test_bad_names_and_values_raise_invalid_field_error(
        self, call: Any, field: str
    ) -> None:
        repo = await people()
        with pytest.raises(InvalidFieldError) as caught:
            await call(repo)
        assert caught.value.field == field


class TestWrites:
    async def test_create_assigns_ids_and_python_defaults(self) -> None:
        repo = InMemoryRepository(User)
        ann = await repo.create(email="ann@example.com", name="Ann")
        bob = await repo.create({"email": "bob@example.com", "name": "Bob"}, age=3)
        assert (ann.id, ann.status, ann.age) == (1, "active", None)
        assert (bob.id, bob.age) == (2, 3)
        assert await repo.get_one(1) is ann

    async def test_create_accepts_instances_pydantic_models_and_dataclasses(self) -> None:
        repo = InMemoryRepository(User)
        instance = User(email="a@x.org", name="A")
        assert await repo.create(instance) is instance
        from_pydantic = await repo.create(UserIn(email="b@x.org", name="B", age=5))
        from_dataclass = await repo.create(UserRow(email="c@x.org", name="C"))
        assert [u.id for u in (instance, from_pydantic, from_dataclass)] == [1, 2, 3]
        assert from_pydantic.age == 5
        assert from_dataclass.name == "C"

    async def test_create_rejects_what_is_not_a_column(self) -> None:
        repo = InMemoryRepository(User)
        with pytest.raises(InvalidFieldError) as caught:
            await repo.create(email="a@x.org", name="A", orders=[])
        assert caught.value.field == "orders"
        with pytest.raises(InvalidFieldError, match="nickname"):
            await repo.create(email="a@x.org", name="A", nickname="a")
        assert repo.rows == []

    async def test_duplicates_and_missing_values_raise_conflict_error(self) -> None:
        repo = await people()
        with pytest.raises(ConflictError) as caught:
            await repo.create(email="ann@example.com", name="Ann 2")
        assert (caught.value.kind, caught.value.columns) == ("unique", ("email",))
        with pytest.raises(ConflictError) as caught:
            await repo.create(id=1, email="new@example.com", name="New")
        assert caught.value.columns == ("id",)
        with pytest.raises(ConflictError) as caught:
            await repo.create(email="nameless@example.com")
        assert (caught.value.kind, caught.value.columns) == ("not_null", ("name",))
        assert await repo.count() == 4

    async def test_composite_keys_and_named_unique_constraints(self) -> None:
        repo = InMemoryRepository(Membership)
        await repo.create(user_id=1, group="a", position=1)
        assert (await repo.get_one((1, "a"))).position == 1
        assert await repo.get({"user_id": 1, "group": "a"}) is not None
        with pytest.raises(ConflictError) as caught:
            await repo.create(user_id=2, group="a", position=1)
        assert caught.value.constraint == "uq_group_position"
        with pytest.raises(InvalidFieldError, match="composite primary key"):
            await repo.get(1)

    async def test_update_assigns_columns_and_checks_uniqueness(self) -> None:
        repo = await people()
        bob = await repo.update(2, name="Robert")
        assert bob.name == "Robert"
        assert (await repo.get_one(2)).name == "Robert"
        assert await repo.update(bob, UserIn(email="rob@example.com", name="Rob")) is bob
        with pytest.raises(ConflictError):
            await repo.update(2, email="ann@example.com")
        assert bob.email == "rob@example.com"
        with pytest.raises(NotFoundError):
            await repo.update(99, name="Nobody")
        with pytest.raises(InvalidFieldError):
            await repo.update(2, orders=[])
        with pytest.raises(InvalidFieldError, match="cannot be changed"):
            await repo.update(2, id=20)
        assert (await repo.update(2, id=2, age=18)).age == 18

    async def test_delete_and_bulk_deletes_report_what_they_removed(self) -> None:
        repo = await people()
        assert await repo.delete(1) is True
        assert await repo.delete(1) is False
        assert await repo.delete_many([2, 3, 42]) == 2
        assert await repo.delete_where(name="dee") == 1
        assert await repo.count() == 0
        with pytest.raises(InvalidFieldError, match="all_rows=True"):
            await repo.delete_where()
        await repo.create(email="a@x.org", name="A")
        assert await repo.delete_where(all_rows=True) == 1

    async def test_create_many_is_all_or_nothing(self) -> None:
        repo = InMemoryRepository(User)
        created = await repo.create_many([{"email": "a@x.org", "name": "A"}, UserRow("b@x", "B")])
        assert [u.id for u in created] == [1, 2]
        with pytest.raises(ConflictError):
            await repo.create_many([{"email": "c@x.org", "name": "C"}, {"email": "c@x.org"}])
        assert await repo.count() == 2
        assert await repo.insert_many([{"email": "d@x.org", "name": "D"}]) == 1

    async def test_update_many_updates_by_primary_key(self) -> None:
        repo = await people()
        changed = await repo.update_many(
            [{"id": 1, "age": 1}, {"id": 2, "age": 2}, {"id": 9, "age": 9}]
        )
        assert changed == 2
        assert [u.age for u in await repo.get_many([1, 2])] == [1, 2]
        with pytest.raises(InvalidFieldError, match="primary key"):
            await repo.update_many([{"age": 3}])
        with pytest.raises(InvalidFieldError, match="no column besides the primary key"):
            await repo.update_many([{"id": 1}])

    async def test_upsert_many_inserts_or_updates_on_the_conflict_columns(self) -> None:
        repo = await people()
        rows = [
            {"email": "ann@example.com", "name": "Annie", "age": 32},
            {"email": "eve@example.com", "name": "Eve"},
        ]
        assert await repo.upsert_many(rows, on_conflict=("email",)) == 2
        assert [(u.id, u.name) for u in await repo.list(order_by="id")][::4] == [
            (1, "Annie"),
            (5, "Eve"),
        ]
        await repo.upsert_many(
            [{"email": "eve@example.com", "name": "E", "age": 9}],
            on_conflict=("email",),
            update=("age",),
        )
        eve = await repo.find_one(email="eve@example.com")
        assert eve is not None
        assert (eve.name, eve.age) == ("Eve", 9)
        with pytest.raises(InvalidFieldError, match="unique"):
            await repo.upsert_many(rows, on_conflict=("name",))
        with pytest.raises(TypeError, match="on_conflict"):
            await repo.upsert_many(rows)  # type: ignore[call-arg]
        assert await repo.count() == 5


class TestFakeUnitOfWork:
    async def test_commits_on_a_clean_exit(self) -> None:
        users = InMemoryRepository(User)
        uow = FakeUnitOfWork(users=users)
        async with uow:
            await uow.users.create(email="a@x.org", name="A")
        assert uow.committed
        assert not uow.rolled_back
        assert await users.count() == 1

    async def test_an_exception_rolls_back_everything_since_entry(self) -> None:
        users = await people()
        ann = await users.get_one(1)
        uow = FakeUnitOfWork(users=users)

        async def failing_service() -> None:
            async with uow:
                await uow.users.create(email="new@x.org", name="New")
                await uow.users.update(1, name="Changed")
                ann.age = 99
                await uow.users.delete(2)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await failing_service()
        assert uow.rolled_back
        assert not uow.committed
        assert [u.name for u in users.rows] == ["Ann", "Bob", "Cid", "dee"]
        assert await users.get_one(1) is ann
        assert ann.age == 31

    async def test_explicit_style_keeps_only_committed_work(self) -> None:
        users = InMemoryRepository(User)
        async with FakeUnitOfWork(users=users, autocommit=False) as uow:
            await uow.users.create(email="kept@x.org", name="Kept")
            await uow.commit()
            await uow.users.create(email="lost@x.org", name="Lost")
        assert uow.committed
        assert uow.rolled_back
        assert [u.name for u in users.rows] == ["Kept"]

    async def test_rollback_mid_way_returns_to_the_last_commit(self) -> None:
        users = InMemoryRepository(User)
        async with FakeUnitOfWork(users=users) as uow:
            await uow.users.create(email="a@x.org", name="A")
            await uow.commit()
            await uow.users.create(email="b@x.org", name="B")
            await uow.rollback()
            await uow.users.create(email="c@x.org", name="C")
        assert [u.name for u in users.rows] == ["A", "C"]

    async def test_declared_repositories_are_created_and_outlive_the_block(self) -> None:
        class ShopUnitOfWork(FakeUnitOfWork):
            users: FakeUserRepository
            orders: InMemoryRepository[Order]

        uow = ShopUnitOfWork()
        async with uow:
            assert isinstance(uow.users, FakeUserRepository)
            assert uow.orders.model is Order
            await uow.users.create(email="a@x.org", name="A")
        async with uow:
            assert await uow.users.get_by_email("a@x.org") is not None
        assert set(uow.repositories) == {"users", "orders"}

    async def test_repositories_are_attributes_only_inside_the_block(self) -> None:
        uow = FakeUnitOfWork(users=InMemoryRepository(User))
        with pytest.raises(TransactionRequiredError, match="only inside"):
            uow.users  # noqa: B018
        with pytest.raises(AttributeError, match="repositories: users"):
            uow.orderz  # noqa: B018
        with pytest.raises(AttributeError, match="no session"):
            uow.session  # noqa: B018

    async def test_a_second_unit_of_work_joins_and_a_swallowed_failure_rolls_back(
        self,
    ) -> None:
        users = InMemoryRepository(User)
        outer = FakeUnitOfWork(users=users)
        inner = FakeUnitOfWork(users=users)

        async def inner_service() -> None:
            async with inner:
                await inner.users.create(email="b@x.org", name="B")
                raise ValueError("inner failure")

        async def outer_service() -> None:
            async with outer:
                await outer.users.create(email="a@x.org", name="A")
                with contextlib.suppress(ValueError):
                    await inner_service()

        with pytest.raises(RollbackOnlyError):
            await outer_service()
        assert outer.rolled_back
        assert not outer.committed
        assert users.rows == []

    async def test_a_joined_commit_leaves_the_commit_to_the_outer_block(self) -> None:
        users = InMemoryRepository(User)
        outer = FakeUnitOfWork(users=users)
        inner = FakeUnitOfWork(users=users, autocommit=False)

        async def service() -> None:
            async with outer:
                async with inner:
                    await inner.users.create(email="a@x.org", name="A")
                    await inner.commit()
                raise KeyError("outer failure")

        with pytest.raises(KeyError):
            await service()
        assert users.rows == []

    async def test_entering_an_active_unit_of_work_again_is_an_error(self) -> None:
        uow = FakeUnitOfWork(users=InMemoryRepository(User))
        async with uow:
            with pytest.raises(IllegalTransactionStateError):
                await uow.__aenter__()

    async def test_commit_outside_the_block_is_an_error(self) -> None:
        uow = FakeUnitOfWork(users=InMemoryRepository(User))
        with pytest.raises(TransactionRequiredError):
            await uow.commit()

    async def test_a_service_is_tested_by_its_effects(self) -> None:
        async def register(uow: FakeUnitOfWork, email: str, name: str) -> User:
            async with uow:
                if await uow.users.exists(email=email):
                    raise ValueError(f"{email} is taken")
                return await uow.users.create(email=email, name=name)

        users = FakeUserRepository()
        uow = FakeUnitOfWork(users=users)
        await register(uow, "ann@example.com", "Ann")
        with pytest.raises(ValueError, match="taken"):
            await register(uow, "ann@example.com", "Other Ann")
        assert uow.rolled_back
        assert [u.name for u in users.rows] == ["Ann"]


# --------------------------------------------------------------------------- parity
# One scenario, run through the public API against the real repository and unit of
# work on a database, and against the fakes: the results must be identical.


class UserRepository(AsyncRepository[User]):
    async def get_by_email(self, email: str) -> User | None:
        return await self.find_one(email=email)


class ShopUnitOfWork(SQLAlchemyUnitOfWork):
    users: UserRepository


class FakeShopUnitOfWork(FakeUnitOfWork):
    users: FakeUserRepository


PARITY_PEOPLE = [
    {"email": "ann@example.com", "name": "ann", "age": 31},
    {"email": "bob@example.com", "name": "bob", "age": 17},
    {"email": "cid@example.org", "name": "cid", "age": None},
    {"email": "dee@example.org", "name": "dee", "age": 45},
    {"email": "eve@example.net", "name": "eve", "age": 31, "status": "blocked"},
]


def snapshot(objs: Any) -> list[tuple[Any, ...]]:
    return [(u.id, u.email, u.name, u.age, u.status) for u in objs]


def outcome(exc: SqlaUowError) -> tuple[Any, ...]:
    """What must agree about an error: its type, and its message when raised before SQL."""
    if isinstance(exc, ConflictError):
        return ("ConflictError", exc.kind)
    if isinstance(exc, NotFoundError):
        return ("NotFoundError", str(exc), exc.ident)
    return (type(exc).__name__, str(exc), getattr(exc, "field", None))


async def attempt(call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await call()
    except SqlaUowError as exc:
        return outcome(exc)


async def parity_scenario(uow: Any) -> list[Any]:
    """Everything a service could observe through the repository, as plain values."""
    out: list[Any] = []

    async with uow:
        users = uow.users
        out.append(snapshot(await users.create_many(PARITY_PEOPLE)))
        out.append(snapshot([await users.create(UserIn(email="fay@example.com", name="fay"))]))

    async with uow:
        users = uow.users
        out.append(snapshot([await users.get_one(2)]))
        out.append(await users.get(99))
        out.append(await attempt(lambda: users.get_one(99)))
        out.append(snapshot(await users.get_many([3, 1, 99, 3])))
        out.append(snapshot([await users.get_by_email("dee@example.org")]))
        out.append(await attempt(lambda: users.find_one(email__like="%.org")))
        queries: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
            ((), {"age__gte": 18}),
            ((), {"age": None}),
            ((), {"age__ne": 31}),
            ((), {"age__is_null": False, "status": "active"}),
            ((), {"id__in": [1, 4, 99]}),
            ((), {"id__in": []}),
            ((), {"email__like": "%@example.org"}),
            ((), {"name__ilike": "B%"}),
            ((User.age > 20, User.age < 40), {}),
            ((or_(User.name == "ann", User.age.is_(None)),), {}),
            ((~(User.age > 20),), {}),
            ((~or_(User.age > 40, User.name == "bob"),), {}),
            ((User.id.not_in([1, 2]), User.status != "blocked"), {}),
            ((), {"order_by": "name"}),
            ((), {"order_by": ["-age", "id"], "age__is_null": False}),
            ((), {"order_by": User.email.desc()}),
            ((), {"order_by": "id", "limit": 2, "offset": 3}),
        ]
        for where, filters in queries:
            found = await users.list(*where, **filters)
            if "order_by" not in filters:
                found = sorted(found, key=lambda u: u.id)
            out.append(snapshot(found))
        out.append(await users.count(age__gte=18))
        out.append(await users.exists(name="zed"))
        page = await users.paginate(limit=2, offset=2, order_by="-age", age__is_null=False)
        out.append((snapshot(page.items), page.total, page.has_next))
        out.append([u.id async for u in users.stream(order_by="id", chunk_size=2)])
        out.append([len(c) async for c in users.stream_chunks(order_by="id", chunk_size=4)])
        cursor_pages = [await users.paginate_cursor(order_by="-age", limit=4)]
        while cursor_pages[-1].next_cursor is not None:
            after = cursor_pages[-1].next_cursor
            cursor_pages.append(await users.paginate_cursor(order_by="-age", limit=4, after=after))
        back = cursor_pages[-1].previous_cursor
        cursor_pages.append(await users.paginate_cursor(order_by="-age", limit=4, before=back))
        out.append([(snapshot(p.items), p.next_cursor, p.previous_cursor) for p in cursor_pages])
        scoped = await users.paginate_cursor(order_by="-age", limit=1, cursor_scope="s")
        out.append(scoped.next_cursor)
        out.append(
            await attempt(
                lambda: users.paginate_cursor(order_by="-age", limit=1, after=scoped.next_cursor)
            )
        )
        out.append(
            await attempt(
                lambda: users.paginate_cursor(
                    order_by="-age", limit=1, cursor_scope="t", after=scoped.next_cursor
                )
            )
        )
        out.append(await attempt(lambda: users.list(emial="x")))
        out.append(await attempt(lambda: users.count(age__between=1)))
        out.append(await attempt(lambda: users.list(order_by="-agee")))
        out.append(await attempt(lambda: users.list(limit=-1)))
        out.append(await attempt(lambda: users.paginate(limit=0)))
        out.append(await attempt(lambda: users.exists(id__in="12")))
        out.append(await attempt(lambda: users.create(email="x@x.org", orders=[])))
        out.append(await attempt(lambda: users.update(1, id=7)))
        out.append(await attempt(lambda: users.get((1, 2))))
        out.append(await attempt(lambda: users.update_many([{"name": "x"}])))
        out.append(await attempt(lambda: users.delete_where()))
        out.append(await attempt(lambda: users.paginate_cursor(limit=2, after="garbage")))
        out.append(await attempt(lambda: users.list(age="old")))
        out.append(await attempt(lambda: users.get(True)))
        out.append(await attempt(lambda: users.get_many([1, "x"])))
        out.append(await attempt(lambda: users.list(id__in=[1, 2.5])))
        out.append(await attempt(lambda: users.list(email__gt=5)))
        out.append(await attempt(lambda: users.list(age__like="3%")))
        out.append(await attempt(lambda: users.update(1, age="many")))
        out.append(await attempt(lambda: users.delete_many([1, None, "y"])))
        out.append(snapshot(await users.list(id__in=["1", 2], age__gte="18", order_by="id")))
        out.append(snapshot([await users.get_one("2")]))

    async with uow:
        users = uow.users
        out.append(snapshot([await users.update(2, name="robert", age=18)]))
        bob = await users.get_one(2)
        out.append(snapshot([await users.update(bob, UserIn(email="rob@example.com", name="rob"))]))
        out.append(await users.update_many([{"id": 1, "age": 32}, {"id": 99, "age": 1}]))
        out.append(await attempt(lambda: users.update(99, name="nobody")))
        out.append(snapshot(await users.list(order_by="id")))

    with contextlib.suppress(LookupError):
        async with uow:
            await uow.users.delete(1)
            await uow.users.update(3, name="changed")
            raise LookupError("roll this back")
    async with uow:
        out.append(snapshot(await uow.users.list(order_by="id")))

    async with uow:
        users = uow.users
        out.append(await users.delete(1))
        out.append(await users.delete(1))
        out.append(await users.delete_many([2, 99]))
        out.append(await users.delete_where(status="blocked"))
        out.append(snapshot(await users.list(order_by="id")))

    for values in (
        {"email": "dee@example.org", "name": "again"},
        {"id": 3, "email": "new@example.org", "name": "new"},
        {"email": "nameless@example.org"},
    ):
        try:
            async with uow:
                await uow.users.create(**values)
        except ConflictError as exc:
            out.append(outcome(exc))
    try:
        async with uow:
            await uow.users.update(3, email="dee@example.org")
    except ConflictError as exc:
        out.append(outcome(exc))
    # A conflict caught inside the unit of work still dooms it (Django's and Spring's rule).
    try:
        async with uow:
            await uow.users.create(email="kept@example.org", name="kept")
            with contextlib.suppress(ConflictError):
                await uow.users.create(email="dee@example.org", name="dup")
    except RollbackOnlyError as exc:
        out.append(type(exc).__name__)
    async with uow:
        out.append(await uow.users.exists(email="kept@example.org"))

    async with uow:
        users = uow.users
        rows = [
            {"email": "dee@example.org", "name": "dee2", "age": 46},
            {"email": "gus@example.com", "name": "gus"},
        ]
        out.append(await users.upsert_many(rows, on_conflict=("email",)))
        out.append(await users.upsert_many(rows, on_conflict=("email",), update=()))
        out.append(
            await users.upsert_many(
                [{"email": "cid@example.org", "name": "c", "age": 5}],
                on_conflict=("email",),
                update=("age",),
            )
        )
        everyone = await users.list(order_by="email")
        out.append([(u.email, u.name, u.age, u.status) for u in everyone])
    return out


class TestParityWithTheRealRepository:
    async def test_the_fakes_behave_like_the_repository_on_a_database(
        self, engine: AsyncEngine
    ) -> None:
        real = await parity_scenario(ShopUnitOfWork(TransactionManager(engine)))
        fake = await parity_scenario(FakeShopUnitOfWork())
        assert len(fake) == len(real)
        for index, (got, expected) in enumerate(zip(fake, real, strict=True)):
            assert got == expected, f"step {index} differs"


FILTER_PEOPLE = [
    {"email": f"{name}@example.org", "name": name, "age": age, "status": status}
    for name, age, status in [
        ("ann", 31, "active"),
        ("bob", None, "active"),
        ("cid", 17, "blocked"),
        ("dee", 45, "active"),
        ("eve", None, "blocked"),
        ("fay", 31, "gone"),
        ("gus", 0, "active"),
    ]
]
FILTER_VALUES: dict[str, list[Any]] = {
    "age": [None, 0, 17, 31, 99],
    "name": [None, "ann", "cid", "zed"],
}
PATTERNS = ["%", "a%", "%e", "_e_", "%u%", "x%", "D%"]


def every_keyword_filter() -> list[dict[str, Any]]:
    """Every field, lookup and value of a small domain: one filter each."""
    filters: list[dict[str, Any]] = []
    for field, values in FILTER_VALUES.items():
        for value in values:
            filters.append({field: value})
            filters.append({f"{field}__ne": value})
            if value is not None:
                filters.extend({f"{field}__{op}": value} for op in ("gt", "gte", "lt", "lte"))
        filters.append({f"{field}__in": [v for v in values if v is not None][:2]})
        filters.append({f"{field}__in": []})
        filters.extend({f"{field}__is_null": flag} for flag in (True, False))
    for pattern in PATTERNS:
        filters.append({"name__like": pattern})
        filters.append({"name__ilike": pattern})
    return filters


def random_expressions(count: int, seed: int) -> list[Any]:
    """Nested and_/or_/~ of column comparisons, including NULL comparisons."""
    rng = random.Random(seed)
    leaves = [
        lambda: User.age > rng.choice([0, 17, 31]),
        lambda: User.age <= rng.choice([0, 17, 31]),
        lambda: User.age == rng.choice([0, 31]),
        lambda: User.age != rng.choice([17, 31]),
        lambda: User.age.is_(None),
        lambda: User.age.is_not(None),
        lambda: User.name.in_(rng.sample(["ann", "bob", "cid", "eve"], 2)),
        lambda: User.name.not_in(rng.sample(["ann", "bob", "cid", "eve"], 2)),
        lambda: User.status == rng.choice(["active", "blocked"]),
        lambda: User.name.like(rng.choice(PATTERNS[:6])),
    ]

    def build(depth: int) -> Any:
        kind = rng.random()
        if depth == 0 or kind < 0.35:
            return rng.choice(leaves)()
        if kind < 0.6:
            return and_(build(depth - 1), build(depth - 1))
        if kind < 0.85:
            return or_(build(depth - 1), build(depth - 1))
        return not_(build(depth - 1))

    return [build(3) for _ in range(count)]


class TestFilterParity:
    async def test_every_keyword_filter_and_random_expressions_match_the_database(
        self, engine: AsyncEngine
    ) -> None:
        filters = every_keyword_filter()
        if engine.dialect.name == "sqlite":
            # SQLite's LIKE ignores ASCII case; the fake's LIKE is PostgreSQL's (it does not).
            filters.remove({"name__like": "D%"})
        expressions = random_expressions(150, seed=20261122)
        fake = InMemoryRepository(User, rows=FILTER_PEOPLE)
        async with AsyncSession(engine, expire_on_commit=False) as session:
            real = UserRepository(session)
            await real.create_many(FILTER_PEOPLE)
            mismatches = []
            for criteria in filters:
                got = {u.name for u in await fake.list(**criteria)}
                expected = {u.name for u in await real.list(**criteria)}
                if got != expected:
                    mismatches.append((criteria, got, expected))
            for expression in expressions:
                got = {u.name for u in await fake.list(expression)}
                expected = {u.name for u in await real.list(expression)}
                if got != expected:
                    mismatches.append((str(expression), got, expected))
            await session.rollback()
        assert mismatches == []
        assert len(filters) > 60


@pytest.fixture
def metadata() -> MetaData:
    return models.shop.Base.metadata
