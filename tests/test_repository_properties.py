"""Hypothesis properties: the repository agrees with plain Python models of its behaviour."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, String, delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository, ConflictError, NotFoundError


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "prop_thing"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str | None] = mapped_column(String(10))
    score: Mapped[int | None]


class ThingRepository(AsyncRepository[Thing]):
    pass


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


PROPERTY_SETTINGS = settings(
    max_examples=35,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

names = st.none() | st.text(alphabet="ab", max_size=3)
scores = st.none() | st.integers(min_value=-3, max_value=3)
rows_strategy = st.dictionaries(
    st.integers(min_value=1, max_value=30),
    st.tuples(names, scores),
    max_size=10,
)
patterns = st.text(alphabet="ab%_", min_size=1, max_size=4)


@st.composite
def filters_strategy(draw: st.DrawFn) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if draw(st.booleans()):
        lookup = draw(st.sampled_from(["", "__ne", "__like", "__ilike", "__in", "__is_null"]))
        if lookup in ("", "__ne"):
            value: Any = draw(names)
        elif lookup in ("__like", "__ilike"):
            value = draw(patterns)
        elif lookup == "__in":
            value = draw(st.lists(st.text(alphabet="ab", max_size=3), max_size=3))
        else:
            value = draw(st.booleans())
        filters["name" + lookup] = value
    if draw(st.booleans()):
        lookup = draw(
            st.sampled_from(["", "__ne", "__gt", "__gte", "__lt", "__lte", "__in", "__is_null"])
        )
        if lookup in ("", "__ne"):
            value = draw(scores)
        elif lookup == "__in":
            value = draw(st.lists(st.integers(-3, 3), max_size=3))
        elif lookup == "__is_null":
            value = draw(st.booleans())
        else:
            value = draw(st.integers(-3, 3))
        filters["score" + lookup] = value
    return filters


def like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def matches(value: Any, lookup: str, operand: Any) -> bool:
    """SQL semantics in Python: a comparison involving NULL is never true."""
    if lookup == "":
        return value is None if operand is None else value == operand
    if lookup == "__ne":
        return value is not None if operand is None else (value is not None and value != operand)
    if lookup == "__is_null":
        return (value is None) is operand
    if value is None:
        return False
    if lookup == "__in":
        return value in operand
    if lookup in ("__like", "__ilike"):
        return like(operand, value)
    compare = {
        "__gt": value > operand,
        "__gte": value >= operand,
        "__lt": value < operand,
        "__lte": value <= operand,
    }
    return compare[lookup]


def python_filter(
    rows: dict[int, tuple[str | None, int | None]], filters: dict[str, Any]
) -> set[int]:
    found = set()
    for ident, (name, score) in rows.items():
        ok = True
        for key, operand in filters.items():
            field, sep, lookup = key.partition("__")
            value = name if field == "name" else score
            ok = ok and matches(value, sep + lookup, operand)
        if ok:
            found.add(ident)
    return found


async def reset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(Thing.__table__))


class TestProperties:
    @PROPERTY_SETTINGS
    @given(rows=rows_strategy, filters=filters_strategy())
    async def test_list_with_filters_equals_the_python_predicate(
        self,
        engine: AsyncEngine,
        rows: dict[int, tuple[str | None, int | None]],
        filters: dict[str, Any],
    ) -> None:
        await reset(engine)
        async with AsyncSession(engine) as session:
            things = ThingRepository(session)
            for ident, (name, score) in rows.items():
                session.add(Thing(id=ident, name=name, score=score))
            await session.flush()
            expected = python_filter(rows, filters)
            assert {t.id for t in await things.list(**filters)} == expected
            assert await things.count(**filters) == len(expected)
            assert await things.exists(**filters) is bool(expected)
            await session.rollback()

    @PROPERTY_SETTINGS
    @given(
        operations=st.lists(
            st.tuples(
                st.sampled_from(["create", "update", "delete"]),
                st.integers(min_value=1, max_value=5),
                names,
                scores,
            ),
            max_size=12,
        )
    )
    async def test_writes_behave_like_a_dict(
        self, engine: AsyncEngine, operations: list[tuple[str, int, str | None, int | None]]
    ) -> None:
        await reset(engine)
        model: dict[int, tuple[str | None, int | None]] = {}
        async with AsyncSession(engine, expire_on_commit=False) as session:
            things = ThingRepository(session)
            for op, ident, name, score in operations:
                if op == "create":
                    if ident in model:
                        with pytest.raises(ConflictError):
                            await things.create(id=ident, name=name, score=score)
                        await session.rollback()
                    else:
                        created = await things.create(id=ident, name=name, score=score)
                        assert (created.id, created.name, created.score) == (ident, name, score)
                        model[ident] = (name, score)
                elif op == "update":
                    if ident in model:
                        updated = await things.update(ident, {"name": name}, score=score)
                        assert (updated.name, updated.score) == (name, score)
                        model[ident] = (name, score)
                    else:
                        with pytest.raises(NotFoundError):
                            await things.update(ident, name=name)
                else:
                    assert await things.delete(ident) is (ident in model)
                    model.pop(ident, None)
                await session.commit()
                session.expunge_all()
                stored = {t.id: (t.name, t.score) for t in await things.list()}
                assert stored == model
                for probe in range(1, 6):
                    found = await things.get(probe)
                    assert (found is not None) is (probe in model)

    @PROPERTY_SETTINGS
    @given(
        rows=rows_strategy,
        keys=st.lists(
            st.sampled_from(["name", "-name", "score", "-score"]),
            max_size=2,
            unique_by=lambda key: key.lstrip("-"),  # a keyset names each column once
        ),
        limit=st.integers(min_value=1, max_value=4),
    )
    async def test_cursor_pages_visit_every_row_once_in_order(
        self,
        engine: AsyncEngine,
        rows: dict[int, tuple[str | None, int | None]],
        keys: list[str],
        limit: int,
    ) -> None:
        await reset(engine)

        def compare(a: int, b: int) -> int:
            for key in [*keys, "id"]:
                field = key.lstrip("-")
                x = a if field == "id" else rows[a][0 if field == "name" else 1]
                y = b if field == "id" else rows[b][0 if field == "name" else 1]
                if x == y:
                    continue
                result = 1 if x is None else -1 if y is None else (-1 if x < y else 1)
                return -result if key.startswith("-") else result
            return 0

        expected = sorted(rows, key=functools.cmp_to_key(compare))
        async with AsyncSession(engine) as session:
            things = ThingRepository(session)
            for ident, (name, score) in rows.items():
                session.add(Thing(id=ident, name=name, score=score))
            await session.flush()
            pages = [await things.paginate_cursor(order_by=keys, limit=limit)]
            while pages[-1].next_cursor is not None:
                after = pages[-1].next_cursor
                pages.append(await things.paginate_cursor(order_by=keys, limit=limit, after=after))
            assert [t.id for page in pages for t in page.items] == expected
            back = pages[-1]
            for page in reversed(pages[:-1]):
                before = back.previous_cursor
                back = await things.paginate_cursor(order_by=keys, limit=limit, before=before)
                assert [t.id for t in back.items] == [t.id for t in page.items]
            await session.rollback()
