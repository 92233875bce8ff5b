"""Hypothesis: bulk writes on `InMemoryRepository` agree with `AsyncRepository` on SQLite.

Each example is a sequence of bulk operations (``create_many``, ``update_many``,
``delete_many``, ``delete_where``, ``upsert_many`` with and without ``update=``) on a
table with a primary key and a unique column, drawn so that keys collide often. Both
repositories run it; every call's result (or the kind of error it raised) and the rows
left after it must be the same.

A fixed scenario does the same for scoped views (``scoped``, ``including_deleted``) of a
soft-deleting model: every read and write method, inside and outside the scope. Another
does it for deletes at a version (``delete`` / ``hard_delete`` with ``version=``) of a
soft-deleting, versioned model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, String, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import (
    AsyncRepository,
    ConflictError,
    CursorPage,
    Page,
    SqlaUowError,
    TransactionManager,
)
from sqla_uow.mixins import SoftDeleteMixin, VersionedMixin
from sqla_uow.testing import InMemoryRepository


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "parity_items"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    code: Mapped[str] = mapped_column(String(5), unique=True)
    qty: Mapped[int | None]


class ItemRepository(AsyncRepository[Item]):
    pass


class Stock(SoftDeleteMixin, Base):
    __tablename__ = "parity_stock"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    shop: Mapped[int]
    code: Mapped[str] = mapped_column(String(5), unique=True)
    qty: Mapped[int | None]


class Ticket(SoftDeleteMixin, VersionedMixin, Base):
    __tablename__ = "parity_ticket"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    shop: Mapped[int]
    qty: Mapped[int | None]


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


ids = st.integers(min_value=1, max_value=4)
codes = st.sampled_from(["a", "b", "c", "d"])
qtys = st.none() | st.integers(min_value=-2, max_value=2)
full_rows = st.fixed_dictionaries({"id": ids, "code": codes, "qty": qtys})
partial_rows = st.fixed_dictionaries({"id": ids}, optional={"code": codes, "qty": qtys})

operations = st.one_of(
    st.tuples(st.just("create_many"), st.lists(full_rows, max_size=3)),
    st.tuples(st.just("update_many"), st.lists(partial_rows, max_size=3)),
    st.tuples(st.just("delete_many"), st.lists(ids, max_size=3)),
    st.tuples(st.just("delete_where"), qtys),
    st.tuples(
        st.just("upsert_many"),
        st.lists(full_rows, max_size=3),
        st.sampled_from([("code",), ("id",)]),
        st.sampled_from([None, ("qty",), ()]),
    ),
)


def call(repo: Any, op: tuple[Any, ...]) -> Callable[[], Awaitable[Any]]:
    name = op[0]
    if name == "create_many":
        return lambda: repo.create_many([dict(row) for row in op[1]])
    if name == "update_many":
        return lambda: repo.update_many([dict(row) for row in op[1]])
    if name == "delete_many":
        return lambda: repo.delete_many(list(op[1]))
    if name == "delete_where":
        return lambda: (
            repo.delete_where(qty__gte=op[1])
            if op[1] is not None
            else repo.delete_where(qty__is_null=True)
        )
    rows, on_conflict, update = op[1], op[2], op[3]
    return lambda: repo.upsert_many(
        [dict(row) for row in rows], on_conflict=on_conflict, update=update
    )


def result_of(value: Any) -> Any:
    if isinstance(value, list):
        return sorted((item.id, item.code, item.qty) for item in value)
    return value


def error_of(exc: SqlaUowError) -> Any:
    if isinstance(exc, ConflictError):
        return ("ConflictError", exc.kind)
    return (type(exc).__name__,)


async def run_real(tm: TransactionManager, op: tuple[Any, ...]) -> Any:
    try:
        async with tm.transaction() as session:
            return ("ok", result_of(await call(ItemRepository(session), op)()))
    except SqlaUowError as exc:
        return error_of(exc)


async def run_fake(repo: InMemoryRepository[Item], op: tuple[Any, ...]) -> Any:
    try:
        return ("ok", result_of(await call(repo, op)()))
    except SqlaUowError as exc:
        return error_of(exc)


async def real_rows(tm: TransactionManager) -> list[tuple[Any, ...]]:
    async with tm.transaction() as session:
        return sorted(
            tuple(row) for row in await session.execute(select(Item.id, Item.code, Item.qty))
        )


def fake_rows(repo: InMemoryRepository[Item]) -> list[tuple[Any, ...]]:
    return sorted((item.id, item.code, item.qty) for item in repo.rows)


class TestBulkParity:
    @pytest.mark.backends("sqlite")
    @settings(
        max_examples=500,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(ops=st.lists(operations, min_size=1, max_size=5))
    async def test_bulk_writes_agree_with_the_database(
        self, engine: AsyncEngine, ops: list[tuple[Any, ...]]
    ) -> None:
        tm = TransactionManager(engine)
        async with tm.transaction() as session:
            await session.execute(delete(Item))
        fake = InMemoryRepository(Item)
        for step, op in enumerate(ops):
            real = await run_real(tm, op)
            got = await run_fake(fake, op)
            assert got == real, f"step {step} {op!r}: fake {got!r}, database {real!r}"
            assert fake_rows(fake) == await real_rows(tm), f"rows after step {step} {op!r}"


def shown(key: str, value: Any) -> Any:
    return value is not None if key == "deleted_at" else value


def stock_result(value: Any) -> Any:
    if isinstance(value, Base):
        table: Any = type(value).__table__
        return tuple(shown(key, value.__dict__.get(key)) for key in [c.key for c in table.columns])
    if isinstance(value, list):
        return sorted(stock_result(item) for item in value)
    if isinstance(value, Page):
        return ("page", stock_result(value.items), value.total)
    if isinstance(value, CursorPage):
        return ("cursor page", stock_result(value.items), value.has_next)
    return value


async def streamed(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


def A(i: int, code: str, qty: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": i, "code": code, "qty": qty, **extra}


STOCK_SCENARIO: list[tuple[str, Callable[[Any], Awaitable[Any]]]] = [
    ("create in shop 2", lambda r: r.create(A(1, "a", 1, shop=2))),
    ("scoped create fills the shop", lambda r: r.scoped(shop=1).create(A(2, "b", 2))),
    ("scoped create_many", lambda r: r.scoped(shop=1).create_many([A(3, "c"), A(4, "d", 4)])),
    ("scoped insert_many", lambda r: r.scoped(shop=1).insert_many([A(5, "e", 5, shop=1)])),
    ("contradicting create", lambda r: r.scoped(shop=1).create(A(6, "f", shop=2))),
    ("contradicting create_many", lambda r: r.scoped(shop=1).create_many([A(6, "f", shop=3)])),
    ("get outside", lambda r: r.scoped(shop=1).get(1)),
    ("get inside", lambda r: r.scoped(shop=1).get(2)),
    ("get_one outside", lambda r: r.scoped(shop=1).get_one(1)),
    ("get_many", lambda r: r.scoped(shop=1).get_many([1, 2, 3])),
    ("find_one outside", lambda r: r.scoped(shop=1).find_one(code="a")),
    ("list", lambda r: r.scoped(shop=1).list(qty__is_null=False)),
    ("count", lambda r: r.scoped(shop=1).count()),
    ("exists outside", lambda r: r.scoped(shop=1).exists(code="a")),
    ("paginate", lambda r: r.scoped(shop=1).paginate(limit=2, order_by="id")),
    ("paginate_cursor", lambda r: r.scoped(shop=1).paginate_cursor(limit=2, order_by="id")),
    ("stream", lambda r: streamed(r.scoped(shop=1).stream(order_by="id"))),
    ("stream_chunks", lambda r: streamed(r.scoped(shop=1).stream_chunks(chunk_size=2))),
    ("update outside", lambda r: r.scoped(shop=1).update(1, qty=9)),
    ("update moving out", lambda r: r.scoped(shop=1).update(2, shop=2)),
    ("update inside", lambda r: r.scoped(shop=1).update(2, qty=7)),
    (
        "update_many",
        lambda r: r.scoped(shop=1).update_many([{"id": 1, "qty": 8}, {"id": 3, "qty": 8}]),
    ),
    (
        "upsert_many inside",
        lambda r: r.scoped(shop=1).upsert_many([A(3, "c", 3), A(7, "g")], on_conflict=("code",)),
    ),
    (
        "upsert_many outside",
        lambda r: r.scoped(shop=1).upsert_many([A(1, "a", 0)], on_conflict=("code",)),
    ),
    ("delete outside", lambda r: r.scoped(shop=1).delete(1)),
    ("delete at a version, unversioned", lambda r: r.delete(2, version=1)),
    ("hard_delete at a version, unversioned", lambda r: r.hard_delete(2, version=1)),
    ("soft delete", lambda r: r.scoped(shop=1).delete(2)),
    ("soft delete again", lambda r: r.scoped(shop=1).delete(2)),
    ("get deleted", lambda r: r.get(2)),
    ("update deleted", lambda r: r.update(2, qty=1)),
    ("delete_many", lambda r: r.scoped(shop=1).delete_many([1, 2, 3])),
    ("delete_where", lambda r: r.scoped(shop=1).delete_where(qty__gte=4)),
    ("count including deleted", lambda r: r.including_deleted().count()),
    ("list including deleted", lambda r: r.scoped(shop=1).including_deleted().list()),
    ("restore", lambda r: r.restore(2)),
    ("restore outside", lambda r: r.scoped(shop=2).restore(3)),
    ("hard_delete", lambda r: r.hard_delete(3)),
    ("count", lambda r: r.count()),
]


def T(i: int, shop: int = 1, **extra: Any) -> dict[str, Any]:
    return {"id": i, "shop": shop, "qty": None, **extra}


TICKET_SCENARIO: list[tuple[str, Callable[[Any], Awaitable[Any]]]] = [
    ("create", lambda r: r.create_many([T(1), T(2), T(3, shop=2), T(4), T(5)])),
    ("update", lambda r: r.update(2, qty=5)),
    ("delete stale", lambda r: r.delete(2, version=1)),
    ("delete missing", lambda r: r.delete(99, version=1)),
    ("delete at the version", lambda r: r.delete(2, version=2)),
    ("delete deleted", lambda r: r.delete(2, version=3)),
    ("hard_delete stale", lambda r: r.hard_delete(2, version=2)),
    ("hard_delete at the version", lambda r: r.hard_delete(2, version=3)),
    ("hard_delete missing", lambda r: r.hard_delete(2, version=3)),
    ("scoped delete outside", lambda r: r.scoped(shop=1).delete(3, version=9)),
    ("scoped hard_delete outside", lambda r: r.scoped(shop=1).hard_delete(3, version=9)),
    ("scoped delete stale", lambda r: r.scoped(shop=1).delete(1, version=9)),
    ("scoped delete", lambda r: r.scoped(shop=1).delete(1, version=1)),
    ("restore", lambda r: r.restore(1)),
    ("copy, explicit version wins", lambda r: r.delete(Ticket(id=1, version=1), version=3)),
    ("copy, stale", lambda r: r.delete(Ticket(id=4, version=7))),
    ("copy, explicit stale", lambda r: r.delete(Ticket(id=4, version=1), version=7)),
    ("copy outside the scope", lambda r: r.scoped(shop=1).delete(Ticket(id=3, version=7))),
    ("version not a number", lambda r: r.delete(4, version="x")),
    ("delete without a version", lambda r: r.delete(5)),
]


async def rows_real(tm: TransactionManager, model: type[Any]) -> list[tuple[Any, ...]]:
    table: Any = model.__table__
    keys = [c.key for c in table.columns]
    async with tm.transaction() as session:
        result = await session.execute(select(table))
        return sorted(tuple(shown(key, row._mapping[key]) for key in keys) for row in result)


def rows_fake(repo: InMemoryRepository[Any]) -> list[tuple[Any, ...]]:
    return sorted(stock_result(obj) for obj in repo.rows)


class TestScopeParity:
    @pytest.mark.backends("sqlite")
    @pytest.mark.parametrize(
        ("model", "scenario"),
        [(Stock, STOCK_SCENARIO), (Ticket, TICKET_SCENARIO)],
        ids=["scoped", "versioned deletes"],
    )
    async def test_scoped_and_soft_deleting_views_agree_with_the_database(
        self,
        engine: AsyncEngine,
        model: type[Any],
        scenario: list[tuple[str, Callable[[Any], Awaitable[Any]]]],
    ) -> None:
        tm = TransactionManager(engine)
        fake = InMemoryRepository(model)
        for name, op in scenario:
            try:
                async with tm.transaction() as session:
                    real: Any = (
                        "ok",
                        stock_result(await op(AsyncRepository(session, model=model))),
                    )
            except SqlaUowError as exc:
                real = error_of(exc)
            try:
                got: Any = ("ok", stock_result(await op(fake)))
            except SqlaUowError as exc:
                got = error_of(exc)
            assert got == real, f"{name}: fake {got!r}, database {real!r}"
            assert rows_fake(fake) == await rows_real(tm, model), f"rows after {name}"


class FakeShopStock(InMemoryRepository[Stock]):
    def default_scope(self) -> Mapping[str, Any] | None:
        return {"shop": 3}


class TestFakeDefaultScope:
    async def test_the_fake_applies_its_default_scope_to_reads_and_writes(self) -> None:
        fake = FakeShopStock(rows=[A(1, "a", shop=3), A(2, "b", shop=4)])
        assert [obj.code for obj in await fake.list()] == ["a"]
        made = await fake.create(A(3, "c"))
        assert made.shop == 3
        assert await fake.get(2) is None
        assert await fake.scoped(code="c").count() == 1
