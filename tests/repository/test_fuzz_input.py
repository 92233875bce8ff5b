"""Fuzzing caller input: whatever a caller passes, the answer is a result or a documented error.

Hypothesis generates filter keys and lookups, values of every type (and of the right
type at the edges of its range), order keys, pagination numbers, cursors (random text,
truncated, re-signed with the public default key, deeply nested) and write payloads,
and sends them through the real repository on SQLite and PostgreSQL. Each call must
either succeed, with a result that agrees with a second way of computing it, or raise
a documented error: a `SqlaUowError` subclass, ``ValueError`` or ``TypeError``, never
``AttributeError``, ``RecursionError``, ``OverflowError`` or an error of SQLAlchemy or
the driver. After a failed write the table holds what it held before.

``make test`` runs a modest number of examples per test; set ``SQLA_UOW_FUZZ_EXAMPLES``
(for example to 2000) for a heavier run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import string
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession
from test_input_validation import (
    UID,
    Base,
    Hue,
    Specimen,
    SpecimenRepository,
    fake,
    forged,
    rows,
    table_state,
)

from sqla_uow import SqlaUowError
from sqla_uow._pagination import ordering_fingerprint
from sqla_uow._where import LOOKUPS
from sqla_uow.exceptions import InvalidFieldError

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("SQLA_UOW_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

COLUMNS = [
    "id",
    "sku",
    "name",
    "small",
    "big",
    "uid",
    "at",
    "day",
    "price",
    "ratio",
    "flag",
    "hue",
    "cost",
]
# Columns whose comparisons Python evaluates as every database does (no collation,
# no case folding, no enum order): there the fake's answer must be the database's.
PORTABLE = {"id", "small", "big", "uid", "day", "flag"}

edge_ints = st.sampled_from(
    [0, 1, -1, 2**15 - 1, 2**15, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    edge_ints,
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.text(alphabet=string.digits + "-+. e:T", max_size=25),
    st.binary(max_size=8),
    st.decimals(),
    st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.just(UID),
    st.just(str(UID)),
    st.sampled_from(list(Hue)),
    st.sampled_from(["red", "blue", "one", "A-1", "%", "o%", "\x00", "\ud800"]),
    st.builds(object),
)
wild = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.sets(st.integers(-3, 3), max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=6,
)
lookups = st.sampled_from(["", *(f"__{name}" for name in LOOKUPS), "__between", "__", "___in"])
filter_keys = st.one_of(
    st.builds(lambda column, lookup: column + lookup, st.sampled_from(COLUMNS), lookups),
    st.text(max_size=12),
)
filters_strategy = st.dictionaries(filter_keys, wild, max_size=3)
order_items = st.one_of(
    st.sampled_from(COLUMNS).flatmap(lambda c: st.sampled_from([c, f"-{c}", f"+{c}", f"--{c}"])),
    st.text(max_size=8),
    st.integers(),
    st.none(),
)
order_by_strategy = st.one_of(order_items, st.lists(order_items, max_size=3), wild)
numbers = st.one_of(
    st.integers(min_value=-2, max_value=5),
    edge_ints,
    st.integers(),
    st.floats(),
    st.booleans(),
    st.text(max_size=4),
    st.none(),
    st.decimals(),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2)
    ),
    max_leaves=8,
)
tagged = st.builds(
    lambda tag, payload: {tag: payload},
    st.sampled_from(["dt", "d", "t", "td", "dec", "uuid", "b", "float", "enum", "x"]),
    json_values,
)


def assert_documented(exc: BaseException) -> None:
    """Fail unless *exc* is an error callers are told to expect."""
    documented = isinstance(exc, (SqlaUowError, ValueError, TypeError)) and not isinstance(
        exc, (sa_exc.SQLAlchemyError, UnicodeError)
    )
    if not documented:
        raise AssertionError(f"undocumented {type(exc).__name__}: {exc}") from exc


async def attempt(call: Awaitable[Any]) -> tuple[str, Any]:
    """("ok", result) or ("error", exception), the latter only for a documented error."""
    try:
        return "ok", await call
    except Exception as exc:
        assert_documented(exc)
        return "error", exc


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
async def specimens(session: AsyncSession) -> SpecimenRepository:
    repo = SpecimenRepository(session)
    await repo.create_many(rows())
    await session.commit()
    return repo


class TestFuzzReads:
    @FUZZ
    @given(filters=filters_strategy)
    async def test_filters(
        self, specimens: SpecimenRepository, backend: str, filters: dict[str, Any]
    ) -> None:
        kind, found = await attempt(specimens.list(**filters))
        counted = await attempt(specimens.count(**filters))
        fake_kind, fake_found = await attempt(fake().list(**filters))
        if kind == "ok":
            assert counted == ("ok", len(found))
            portable = all(
                key.partition("__")[0] in PORTABLE and "like" not in key for key in filters
            )
            if portable and fake_kind == "ok":
                assert sorted(s.id for s in fake_found) == sorted(s.id for s in found)
        else:
            assert counted[0] == "error"
            if isinstance(found, InvalidFieldError) and "-bit column" not in str(found):
                # Checked before SQL by shared code: the fake says the same.
                assert fake_kind == "error"
                assert str(fake_found) == str(found)
        # Nothing reached the database that could have aborted the transaction.
        assert await specimens.count() == 3

    @FUZZ
    @given(order_by=order_by_strategy, limit=numbers, offset=numbers)
    async def test_order_keys_and_pagination_numbers(
        self, specimens: SpecimenRepository, order_by: Any, limit: Any, offset: Any
    ) -> None:
        kind, found = await attempt(specimens.list(order_by=order_by, limit=limit, offset=offset))
        if kind == "ok":
            expected = max(0, min(3 - (offset or 0), 3 if limit is None else limit))
            assert len(found) == expected
        kind, page = await attempt(specimens.paginate(limit=limit, offset=offset))
        if kind == "ok":
            assert page.total == 3
        kind, cursor_page = await attempt(specimens.paginate_cursor(limit=limit, order_by=order_by))
        if kind == "ok":
            assert len(cursor_page.items) == min(limit, 3)
        await attempt(_drain(specimens, order_by, limit))
        assert await specimens.count() == 3


async def _drain(repo: SpecimenRepository, order_by: Any, chunk_size: Any) -> int:
    return len([s async for s in repo.stream(order_by=order_by, chunk_size=chunk_size)])


class TestFuzzCursors:
    @FUZZ
    @given(
        order=st.sampled_from([("id",), ("-name",), ("at", "-id"), ("cost",), ("hue", "day")]),
        data=st.data(),
    )
    async def test_cursors(
        self, specimens: SpecimenRepository, order: tuple[str, ...], data: st.DataObject
    ) -> None:
        first = await specimens.paginate_cursor(limit=1, order_by=list(order))
        valid = first.next_cursor
        assert valid is not None
        keys = tuple((name.lstrip("-"), name.startswith("-")) for name in order)
        keys += (("id", False),) if "id" not in {k for k, _ in keys} else ()
        fingerprint = ordering_fingerprint(Specimen, keys)
        width = len(keys)
        cursor_values = json_values | tagged | wild.filter(_json_ready)
        cursor = data.draw(
            st.one_of(
                st.text(max_size=80),
                st.integers(0, len(valid)).map(lambda cut: valid[:cut]),
                st.integers(0, len(valid) - 1).map(lambda at: valid[:at] + "A" + valid[at + 1 :]),
                st.lists(cursor_values, min_size=width, max_size=width).map(
                    lambda values: forged(fingerprint, values)
                ),
                json_values.map(lambda body: forged(fingerprint, body)),
                st.integers(1, 5000).map(
                    lambda depth: forged(
                        fingerprint,
                        [],
                        raw_body=b'{"f":"%s","v":' % fingerprint.encode()
                        + b"[" * depth
                        + b"]" * depth
                        + b"}",
                    )
                ),
            )
        )
        for repo in (specimens, fake()):
            for direction in ("after", "before"):
                kind, page = await attempt(
                    repo.paginate_cursor(limit=2, order_by=list(order), **{direction: cursor})
                )
                if kind == "ok":
                    assert len(page.items) <= 2
        assert await specimens.count() == 3


def _json_ready(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class TestFuzzWrites:
    @FUZZ
    @given(payload=st.dictionaries(st.sampled_from(COLUMNS), wild, min_size=1, max_size=3))
    async def test_update_payloads(
        self, specimens: SpecimenRepository, payload: dict[str, Any]
    ) -> None:
        session = specimens.session
        before = await table_state(specimens)
        for call in (
            specimens.update(2, **payload),
            specimens.update_many([{"id": 3, **payload}]),
            # The key stays given: a NULL key SQLAlchemy would warn about before the INSERT.
            specimens.create(**{"sku": "N-9", "name": "nine", **payload, "id": 9}),
            specimens.create_many([{"sku": "N-10", "name": "ten", **payload, "id": 10}]),
            specimens.upsert_many(
                [{"sku": "A-1", "name": "eleven", **payload, "id": 11}], on_conflict=("sku",)
            ),
        ):
            kind, _ = await attempt(call)
            await session.rollback()
            assert await table_state(specimens) == before, kind

    @FUZZ
    @given(key=wild)
    async def test_primary_keys(self, specimens: SpecimenRepository, key: Any) -> None:
        session = specimens.session
        before = await table_state(specimens)
        for call in (
            specimens.get(key),
            specimens.get_many([key]),
            specimens.delete(key),
            specimens.delete_many([key]),
            specimens.update(key, name="changed"),
        ):
            await attempt(call)
            await session.rollback()
            assert await table_state(specimens) == before


@pytest.mark.parametrize(
    "value",
    [Decimal("1e999999"), 10**5000, "9" * 5000, [[[[]]]]],
    ids=["huge-decimal", "huge-int", "long-digits", "nested-lists"],
)
async def test_extreme_values_are_refused_without_crashing(
    specimens: SpecimenRepository, value: Any
) -> None:
    for key in ("id", "price", "ratio", "uid", "at"):
        kind, result = await attempt(specimens.list(**{key: value}))
        assert kind == "error", (key, result)
    assert await specimens.count() == 3
