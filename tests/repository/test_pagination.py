"""Offset pages (`Page`) and keyset pages (`CursorPage`) against real databases."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import functools
import json
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Enum, MetaData, Numeric, String, Uuid, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository, CursorPage, InvalidCursorError, InvalidFieldError, Page
from sqla_uow._pagination import _checksum, encode_cursor, ordering_fingerprint
from sqla_uow.testing import InMemoryRepository


class Base(DeclarativeBase):
    pass


class Event(Base):
    __tablename__ = "page_event"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    rank: Mapped[int]
    score: Mapped[int | None]
    label: Mapped[str | None] = mapped_column(String(20))
    at: Mapped[dt.datetime]
    day: Mapped[dt.date]
    uid: Mapped[uuid.UUID] = mapped_column(Uuid)


class Price(Base):
    __tablename__ = "page_price"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    amount: Mapped[Decimal] = mapped_column(Numeric(10, 2))


class EventRepository(AsyncRepository[Event]):
    pass


class SignedEventRepository(AsyncRepository[Event]):
    cursor_secret = b"s3cret"


class PriceRepository(AsyncRepository[Price]):
    pass


class Color(str, enum.Enum):
    red = "r"
    green = "g"
    blue = "b"


class Level(enum.IntEnum):
    low = 1
    high = 2


class Stamp(Base):
    """Sort values the database writes itself, and str / int enums."""

    __tablename__ = "page_stamp"

    id: Mapped[int] = mapped_column(primary_key=True)
    created: Mapped[dt.datetime] = mapped_column(server_default=func.current_timestamp())
    color: Mapped[Color | None] = mapped_column(Enum(Color))
    level: Mapped[Level | None] = mapped_column(Enum(Level))


BASE_TIME = dt.datetime(2024, 5, 1, 12, 0, 0)
N = 23


def make_events() -> list[Event]:
    return [
        Event(
            id=i,
            rank=(i * 7) % 4,
            score=None if i % 5 == 0 else (i * 3) % 7,
            label=None if i % 3 == 0 else f"l{(i * 11) % 6}",
            at=BASE_TIME + dt.timedelta(hours=(i * 5) % 6, microseconds=i % 2),
            day=dt.date(2024, 1, 1) + dt.timedelta(days=(i * 2) % 5),
            uid=uuid.uuid5(uuid.NAMESPACE_URL, f"event-{i}"),
        )
        for i in range(1, N + 1)
    ]


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
def events(session: AsyncSession) -> EventRepository:
    return EventRepository(session)


@pytest.fixture
async def seeded(session: AsyncSession) -> list[Event]:
    rows = make_events()
    session.add_all(rows)
    await session.commit()
    return rows


def expected_order(rows: Sequence[Event], keys: Sequence[str]) -> list[int]:
    """Row ids sorted by *keys* ("-name" descending), NULL greatest, then by id."""

    def compare(a: Event, b: Event) -> int:
        for key in [*keys, "id"]:
            name = key.lstrip("-")
            x, y = getattr(a, name), getattr(b, name)
            if x == y:
                continue
            if x is None:
                result = 1
            elif y is None:
                result = -1
            else:
                result = -1 if x < y else 1
            return -result if key.startswith("-") else result
        return 0

    return [row.id for row in sorted(rows, key=functools.cmp_to_key(compare))]


async def walk_forward(
    repo: AsyncRepository[Any], order_by: Any, limit: int, **filters: Any
) -> list[CursorPage[Any]]:
    pages = [await repo.paginate_cursor(order_by=order_by, limit=limit, **filters)]
    while pages[-1].next_cursor is not None:
        pages.append(
            await repo.paginate_cursor(
                order_by=order_by, limit=limit, after=pages[-1].next_cursor, **filters
            )
        )
        assert len(pages) <= N + 1
    return pages


class TestOffsetPages:
    async def test_empty_table_gives_an_empty_page(self, events: EventRepository) -> None:
        page = await events.paginate(limit=10)
        assert page == Page(items=[], total=0, limit=10, offset=0)
        assert (page.pages, page.page, page.has_next, page.has_previous) == (0, 1, False, False)
        assert len(page) == 0

    async def test_pages_cover_every_row_once_despite_ties(
        self, events: EventRepository, seeded: list[Event]
    ) -> None:
        seen: list[int] = []
        offset = 0
        while True:
            page = await events.paginate(limit=5, offset=offset, order_by="rank")
            assert page.total == N
            seen += [event.id for event in page]
            if not page.has_next:
                break
            offset += 5
        assert seen == expected_order(seeded, ["rank"])
        assert (page.page, page.pages, page.has_previous, len(page)) == (5, 5, True, 3)

    async def test_middle_page_knows_its_neighbours(
        self, events: EventRepository, seeded: list[Event]
    ) -> None:
        page = await events.paginate(limit=4, offset=8, order_by="-at")
        assert [e.id for e in page.items] == expected_order(seeded, ["-at"])[8:12]
        assert (page.total, page.page, page.pages) == (N, 3, 6)
        assert page.has_next
        assert page.has_previous

    async def test_offset_past_the_end_still_counts(
        self, events: EventRepository, seeded: list[Event]
    ) -> None:
        page = await events.paginate(limit=10, offset=100)
        assert page.items == []
        assert page.total == N
        assert not page.has_next

    async def test_filters_apply_to_items_and_total(
        self, events: EventRepository, seeded: list[Event]
    ) -> None:
        page = await events.paginate(limit=2, rank=1)
        matching = [e for e in seeded if e.rank == 1]
        assert page.total == len(matching)
        assert [e.id for e in page.items] == sorted(e.id for e in matching)[:2]

    @pytest.mark.parametrize(("limit", "offset"), [(0, 0), (-1, 0), (5, -1), (True, 0)], ids=repr)
    async def test_rejects_bad_limit_or_offset(
        self, events: EventRepository, limit: Any, offset: Any
    ) -> None:
        with pytest.raises(InvalidFieldError):
            await events.paginate(limit=limit, offset=offset)


class TestCursorPages:
    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    @pytest.mark.parametrize(
        "keys",
        [
            [],
            ["rank"],
            ["-rank"],
            ["rank", "-score"],
            ["-score", "rank"],
            ["label"],
            ["-label", "-rank"],
            ["at"],
            ["-day", "at"],
        ],
        ids=lambda keys: ",".join(keys) or "pk",
    )
    async def test_walking_forward_and_back_visits_every_row_once(
        self, events: EventRepository, seeded: list[Event], keys: list[str]
    ) -> None:
        order_by = keys or None
        expected = expected_order(seeded, keys)
        pages = await walk_forward(events, order_by, limit=4)
        assert [e.id for page in pages for e in page.items] == expected
        assert [len(page) for page in pages] == [4, 4, 4, 4, 4, 3]
        assert pages[0].previous_cursor is None
        assert pages[-1].next_cursor is None
        back = pages[-1]
        for page in reversed(pages[:-1]):
            assert back.previous_cursor is not None
            back = await events.paginate_cursor(
                order_by=order_by, limit=4, before=back.previous_cursor
            )
            assert [e.id for e in back.items] == [e.id for e in page.items]
        assert back.previous_cursor is None
        assert back.next_cursor == pages[0].next_cursor

    async def test_attribute_and_desc_expressions_are_accepted(
        self, events: EventRepository, seeded: list[Event]
    ) -> None:
        pages = await walk_forward(events, [Event.rank, Event.score.desc()], limit=6)
        assert [e.id for p in pages for e in p.items] == expected_order(seeded, ["rank", "-score"])

    async def test_uuid_values_round_trip(
        self, events: EventRepository, seeded: list[Event]
    ) -> None:
        pages = await walk_forward(events, ["-uid"], limit=5)
        assert [e.id for p in pages for e in p.items] == expected_order(seeded, ["-uid"])

    async def test_empty_table_gives_an_empty_page(self, events: EventRepository) -> None:
        page = await events.paginate_cursor(limit=5)
        assert page == CursorPage(items=[], limit=5, next_cursor=None, previous_cursor=None)
        assert not page.has_next
        assert not page.has_previous

    async def test_exactly_limit_rows_have_no_next_page(
        self, events: EventRepository, seeded: list[Event]
    ) -> None:
        page = await events.paginate_cursor(limit=N, order_by="-rank")
        assert len(page) == N
        assert page.next_cursor is None

    async def test_filters_apply(self, events: EventRepository, seeded: list[Event]) -> None:
        pages = await walk_forward(events, "-at", limit=2, rank__in=[0, 2])
        got = [e.id for p in pages for e in p.items]
        assert got == [i for i in expected_order(seeded, ["-at"]) if seeded[i - 1].rank in (0, 2)]

    async def test_rows_inserted_before_the_cursor_do_not_shift_the_next_page(
        self, events: EventRepository, session: AsyncSession, seeded: list[Event]
    ) -> None:
        first = await events.paginate_cursor(order_by="rank", limit=5)
        session.add(Event(id=100, rank=-1, at=BASE_TIME, day=dt.date(2024, 1, 1), uid=uuid.uuid4()))
        await session.flush()
        second = await events.paginate_cursor(order_by="rank", limit=5, after=first.next_cursor)
        assert [e.id for e in second.items] == expected_order(seeded, ["rank"])[5:10]

    @pytest.mark.backends("postgresql")
    async def test_decimal_values_round_trip(self, session: AsyncSession) -> None:
        prices = PriceRepository(session)
        for i, amount in enumerate(["1.10", "1.10", "0.99", "12.00", "1.10", "0.50"]):
            await prices.create(id=i + 1, amount=Decimal(amount))
        pages = await walk_forward(prices, "-amount", limit=2)
        assert [p.id for page in pages for p in page.items] == [4, 1, 2, 5, 3, 6]


def tamper(token: str) -> str:
    body, _, checksum = token.partition(".")
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw["v"][0] = 99
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
    return f"{forged}.{checksum}"


class TestInvalidCursors:
    async def cursor(self, events: EventRepository, order_by: Any = "rank") -> str:
        page = await events.paginate_cursor(order_by=order_by, limit=3)
        assert page.next_cursor is not None
        return page.next_cursor

    async def test_edited_cursor_is_rejected(
        self, events: EventRepository, seeded: list[Event]
    ) -> None:
        token = await self.cursor(events)
        with pytest.raises(InvalidCursorError, match="integrity check"):
            await events.paginate_cursor(order_by="rank", limit=3, after=tamper(token))

    @pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "!!!.0123456789abcdef", "é"])
    async def test_malformed_cursor_is_rejected(
        self, events: EventRepository, seeded: list[Event], token: str
    ) -> None:
        with pytest.raises(InvalidCursorError):
            await events.paginate_cursor(order_by="rank", limit=3, after=token)
        with pytest.raises(InvalidCursorError):
            await events.paginate_cursor(order_by="rank", limit=3, before=token)

    async def test_cursor_of_another_ordering_is_rejected(
        self, events: EventRepository, seeded: list[Event]
    ) -> None:
        token = await self.cursor(events, "rank")
        for other in ("-rank", ["rank", "score"], None):
            with pytest.raises(InvalidCursorError, match="another model or ordering"):
                await events.paginate_cursor(order_by=other, limit=3, after=token)

    async def test_cursor_of_another_model_is_rejected(
        self, events: EventRepository, session: AsyncSession, seeded: list[Event]
    ) -> None:
        token = await self.cursor(events, None)
        with pytest.raises(InvalidCursorError, match="another model"):
            await PriceRepository(session).paginate_cursor(limit=3, after=token)

    async def test_cursor_signed_with_another_secret_is_rejected(
        self, events: EventRepository, session: AsyncSession, seeded: list[Event]
    ) -> None:
        token = await self.cursor(events)
        signed = SignedEventRepository(session)
        with pytest.raises(InvalidCursorError, match="integrity check"):
            await signed.paginate_cursor(order_by="rank", limit=3, after=token)
        own = (await signed.paginate_cursor(order_by="rank", limit=3)).next_cursor
        page = await signed.paginate_cursor(order_by="rank", limit=3, after=own)
        assert len(page) == 3

    @pytest.mark.parametrize(
        "values",
        [[1], [1, 2, 3], ["one", 2], [1.5, 2], [True, 2], [{"dt": "x"}, 1], [{"zz": 1}, 1]],
        ids=repr,
    )
    async def test_well_signed_cursor_with_wrong_values_is_rejected(
        self, events: EventRepository, seeded: list[Event], values: list[Any]
    ) -> None:
        fingerprint = ordering_fingerprint(Event, [("rank", False), ("id", False)])
        body = json.dumps({"f": fingerprint, "v": values}, separators=(",", ":"), sort_keys=True)
        token = (
            base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
            + "."
            + _checksum(body.encode(), None)
        )
        with pytest.raises(InvalidCursorError):
            await events.paginate_cursor(order_by="rank", limit=3, after=token)

    async def test_cursor_bound_to_a_scope_is_rejected_in_another(
        self, events: EventRepository, seeded: list[Event]
    ) -> None:
        async def rank_page(rank: int, scope: str | None, **cursor: str) -> list[int]:
            page = await events.paginate_cursor(
                order_by="-id", limit=2, rank=rank, cursor_scope=scope, **cursor
            )
            return [e.id for e in page.items]

        first = await events.paginate_cursor(order_by="-id", limit=2, rank=1, cursor_scope="r1")
        assert first.next_cursor is not None
        # The same scope follows the cursor, forwards and back.
        second = await events.paginate_cursor(
            order_by="-id", limit=2, rank=1, cursor_scope="r1", after=first.next_cursor
        )
        expected = sorted((e.id for e in seeded if e.rank == 1), reverse=True)
        assert [e.id for e in first.items + second.items] == expected[:4]
        assert second.previous_cursor is not None
        assert await rank_page(1, "r1", before=second.previous_cursor) == expected[:2]
        # Another scope, or none, refuses it; so does a scope for an unscoped cursor.
        for other in ("r2", "", None):
            with pytest.raises(InvalidCursorError, match="another scope"):
                await rank_page(2, other, after=first.next_cursor)
        unscoped = (await events.paginate_cursor(order_by="-id", limit=2)).next_cursor
        assert unscoped is not None
        with pytest.raises(InvalidCursorError, match="another scope"):
            await rank_page(1, "r1", after=unscoped)

    async def test_cursor_does_not_reveal_its_scope(
        self, events: EventRepository, seeded: list[Event]
    ) -> None:
        page = await events.paginate_cursor(limit=2, cursor_scope="tenant-secret-42")
        assert page.next_cursor is not None
        encoded = page.next_cursor.partition(".")[0]
        body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        assert b"tenant-secret-42" not in body

    async def test_cursor_scope_must_be_a_string(self, events: EventRepository) -> None:
        with pytest.raises(InvalidFieldError, match="cursor_scope must be a str"):
            await events.paginate_cursor(limit=3, cursor_scope=7)  # type: ignore[arg-type]

    async def test_cursor_must_be_a_string(self, events: EventRepository) -> None:
        with pytest.raises(InvalidCursorError, match="must be a string"):
            await events.paginate_cursor(limit=3, after=b"abc")  # type: ignore[arg-type]

    async def test_after_and_before_together_are_rejected(self, events: EventRepository) -> None:
        with pytest.raises(InvalidFieldError, match="either after= or before="):
            await events.paginate_cursor(limit=3, after="x", before="y")

    @pytest.mark.parametrize("order_by", [func.lower(Event.label), "nope", ["rank", 3]])
    async def test_order_must_name_mapped_columns(
        self, events: EventRepository, order_by: Any
    ) -> None:
        with pytest.raises(InvalidFieldError):
            await events.paginate_cursor(limit=3, order_by=order_by)

    @pytest.mark.parametrize("limit", [0, -2, 2.5])
    async def test_rejects_a_bad_limit(self, events: EventRepository, limit: Any) -> None:
        with pytest.raises(InvalidFieldError, match="limit"):
            await events.paginate_cursor(limit=limit)


async def walk_both_ways(repo: Any, order_by: Any, limit: int) -> list[list[Any]]:
    """Page ids walking forward to the end, then back to the start; checks they agree."""
    pages = [await repo.paginate_cursor(order_by=order_by, limit=limit)]
    while pages[-1].next_cursor is not None:
        pages.append(
            await repo.paginate_cursor(order_by=order_by, limit=limit, after=pages[-1].next_cursor)
        )
        assert len(pages) <= 20, "paging does not end"
    forward = [[row.id for row in page.items] for page in pages]
    back = pages[-1]
    backward = [[row.id for row in back.items]]
    while back.previous_cursor is not None:
        back = await repo.paginate_cursor(
            order_by=order_by, limit=limit, before=back.previous_cursor
        )
        if back.items:
            backward.append([row.id for row in back.items])
        assert len(backward) <= 20, "paging does not end"
    assert list(reversed(backward)) == forward
    return forward


class TestCursorSortValues:
    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    @pytest.mark.parametrize("order_by", ["created", "-created", ["created", "-id"]])
    async def test_server_default_timestamps_with_ties_never_skip_or_repeat(
        self, session: AsyncSession, order_by: Any
    ) -> None:
        stamps = AsyncRepository(session, model=Stamp)
        for _ in range(7):  # the same CURRENT_TIMESTAMP second, written by the database
            await stamps.create()
        await session.commit()
        pages = await walk_both_ways(stamps, order_by, limit=2)
        ids = [ident for page in pages for ident in page]
        assert sorted(ids) == list(range(1, 8))
        assert len(ids) == 7

    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    @pytest.mark.parametrize("order_by", ["color", "-color", "level", ["-level", "color"]])
    async def test_str_and_int_enum_values_round_trip(
        self, session: AsyncSession, order_by: Any
    ) -> None:
        colors = [None, *Color]
        levels = [None, *Level]
        rows = [{"color": colors[i % 4], "level": levels[i % 3]} for i in range(11)]
        stamps = AsyncRepository(session, model=Stamp)
        fake = InMemoryRepository(Stamp)
        for row in rows:
            await stamps.create(row)
            await fake.create(row)
        await session.commit()
        db_pages = await walk_both_ways(stamps, order_by, limit=3)
        fake_pages = await walk_both_ways(fake, order_by, limit=3)
        assert sorted(ident for page in db_pages for ident in page) == list(range(1, 12))
        # SQLite and MariaDB compare enum names, PostgreSQL its enum order; every
        # backend keeps pages consistent, and the fake agrees on the set of rows.
        assert sorted(ident for page in fake_pages for ident in page) == list(range(1, 12))

    async def test_integer_out_of_64_bit_range_is_an_invalid_cursor(
        self, session: AsyncSession, events: EventRepository, seeded: list[Event]
    ) -> None:
        fingerprint = ordering_fingerprint(Event, [("score", False), ("id", False)])
        token = encode_cursor([2**70, 3], fingerprint=fingerprint)
        for repo in (events, InMemoryRepository(Event, rows=seeded[:3])):
            with pytest.raises(InvalidCursorError, match="64-bit"):
                await repo.paginate_cursor(order_by="score", limit=2, after=token)
        # Rejected before any SQL: the transaction is still usable (PostgreSQL aborts
        # a transaction whose statement failed).
        assert await events.count() == N

    async def test_a_column_named_twice_is_rejected(self, events: EventRepository) -> None:
        for repo in (events, InMemoryRepository(Event)):
            with pytest.raises(InvalidFieldError, match="'score' of Event twice") as info:
                await repo.paginate_cursor(order_by=["score", "-score"], limit=2)
            assert info.value.field == "score"


class TestNullOrdering:
    """NULL sorts as the greatest value in every read, on every backend and in the fake."""

    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    @pytest.mark.parametrize(
        "keys", [["score"], ["-score"], ["label", "-score"], ["-label", "rank"]], ids=str
    )
    async def test_list_paginate_and_cursor_pages_agree(
        self, events: EventRepository, seeded: list[Event], keys: list[str]
    ) -> None:
        expected = expected_order(seeded, keys)
        fake = InMemoryRepository(Event, rows=make_events())
        for repo in (events, fake):
            listed = await repo.list(order_by=[*keys, "id"])
            assert [e.id for e in listed] == expected
            page = await repo.paginate(order_by=keys, limit=N)
            assert [e.id for e in page.items] == expected
            pages = await walk_forward(repo, keys, limit=5)
            assert [e.id for p in pages for e in p.items] == expected
