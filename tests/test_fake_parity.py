"""Hypothesis: bulk writes on `InMemoryRepository` agree with `AsyncRepository` on SQLite.

Each example is a sequence of bulk operations (``create_many``, ``update_many``,
``delete_many``, ``delete_where``, ``upsert_many`` with and without ``update=``) on a
table with a primary key and a unique column, drawn so that keys collide often. Both
repositories run it; every call's result (or the kind of error it raised) and the rows
left after it must be the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, String, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository, ConflictError, SqlaUowError, TransactionManager
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
