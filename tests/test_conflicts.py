"""Integrity violations surface as ConflictError: kind, constraint, columns, code, chained cause.

Each violation runs on SQLite (foreign keys enforced through a connect event),
PostgreSQL and MariaDB, through the repository's writes and through `conflict_error`
applied to a failed flush.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import CheckConstraint, ForeignKey, MetaData, String, UniqueConstraint, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository
from sqla_uow._errors import conflict_error, is_conflict_error
from sqla_uow.exceptions import ConflictError

pytestmark = pytest.mark.backends("sqlite", "postgresql", "mariadb")


class Base(DeclarativeBase):
    pass


class Team(Base):
    __tablename__ = "conflict_team"

    id: Mapped[int] = mapped_column(primary_key=True)


class Member(Base):
    __tablename__ = "conflict_member"
    __table_args__ = (
        UniqueConstraint("email", name="uq_member_email"),
        CheckConstraint("age >= 0", name="ck_member_age"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(80))
    age: Mapped[int] = mapped_column(default=1)
    team_id: Mapped[int | None] = mapped_column(
        ForeignKey("conflict_team.id", name="fk_member_team")
    )


class Badge(Base):
    """Unnamed unique constraints on columns whose database names differ from the keys."""

    __tablename__ = "conflict_badge"
    __table_args__ = (UniqueConstraint("badge_kind", "badge_rank"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column("badge_code", String(40), unique=True)
    kind: Mapped[str] = mapped_column("badge_kind", String(40))
    rank: Mapped[int] = mapped_column("badge_rank")


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
async def session(engine: AsyncEngine, backend: str) -> AsyncIterator[AsyncSession]:
    """A session with one member (email ``taken@example.com``) committed."""

    def enforce_foreign_keys(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", enforce_foreign_keys)
        await engine.dispose()  # new connections run the connect event
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            session.add(Member(email="taken@example.com", name="Taken"))
            await session.commit()
            yield session
    finally:
        if backend == "sqlite":
            event.remove(engine.sync_engine, "connect", enforce_foreign_keys)


@pytest.fixture
def members(session: AsyncSession) -> AsyncRepository[Member]:
    return AsyncRepository(session, model=Member)


CODES: dict[str, dict[str, str | int]] = {
    "unique": {"sqlite": 2067, "postgresql": "23505", "mariadb": 1062},
    "primary_key": {"sqlite": 1555, "postgresql": "23505", "mariadb": 1062},
    "foreign_key": {"sqlite": 787, "postgresql": "23503", "mariadb": 1452},
    "not_null": {"sqlite": 1299, "postgresql": "23502", "mariadb": 1048},
    "check": {"sqlite": 275, "postgresql": "23514", "mariadb": 4025},
}


def expected_code(case: str, backend: str) -> str | int | None:
    """The driver's error code; Python 3.10's sqlite3 reports none."""
    if backend == "sqlite" and sys.version_info < (3, 11):
        return None
    return CODES[case][backend]


async def violate(members: AsyncRepository[Member], case: str) -> ConflictError:
    row: dict[str, Any] = {"email": "new@example.com", "name": "New"}
    if case == "unique":
        row["email"] = "taken@example.com"
    elif case == "primary_key":
        row["id"] = (await members.find_one(email="taken@example.com")).id  # type: ignore[union-attr]
    elif case == "foreign_key":
        row["team_id"] = 999
    elif case == "not_null":
        row["name"] = None
    elif case == "check":
        row["age"] = -1
    with pytest.raises(ConflictError) as info:
        await members.insert_many([row])
    await members.session.rollback()
    return info.value


class TestConflictError:
    async def test_unique_violation_names_constraint_and_columns(
        self, backend: str, members: AsyncRepository[Member]
    ) -> None:
        error = await violate(members, "unique")
        assert error.kind == "unique"
        assert error.model is Member
        assert error.constraint == "uq_member_email"
        assert error.columns == ("email",)
        assert error.code == expected_code("unique", backend)
        assert isinstance(error.__cause__, sa_exc.IntegrityError)
        assert "unique violation writing Member" in str(error)

    async def test_primary_key_violation_is_a_unique_violation_on_the_key(
        self, backend: str, members: AsyncRepository[Member]
    ) -> None:
        error = await violate(members, "primary_key")
        assert error.kind == "unique"
        assert error.columns == ("id",)
        assert error.code == expected_code("primary_key", backend)

    async def test_foreign_key_violation(
        self, backend: str, members: AsyncRepository[Member]
    ) -> None:
        error = await violate(members, "foreign_key")
        assert error.kind == "foreign_key"
        assert error.code == expected_code("foreign_key", backend)
        assert isinstance(error.__cause__, sa_exc.IntegrityError)
        if backend == "sqlite":  # SQLite names neither the constraint nor the columns
            assert (error.constraint, error.columns) == (None, ())
        else:
            assert error.constraint == "fk_member_team"
            assert error.columns == ("team_id",)

    async def test_not_null_violation_names_the_column(
        self, backend: str, members: AsyncRepository[Member]
    ) -> None:
        error = await violate(members, "not_null")
        assert error.kind == "not_null"
        assert error.columns == ("name",)
        assert error.code == expected_code("not_null", backend)
        assert isinstance(error.__cause__, sa_exc.IntegrityError)

    async def test_check_violation_names_the_constraint(
        self, backend: str, members: AsyncRepository[Member]
    ) -> None:
        error = await violate(members, "check")
        assert error.kind == "check"
        assert error.constraint == "ck_member_age"
        assert error.code == expected_code("check", backend)
        # MariaDB raises a failed CHECK as OperationalError; it is translated all the same.
        expected = sa_exc.OperationalError if backend == "mariadb" else sa_exc.IntegrityError
        assert isinstance(error.__cause__, expected)

    async def test_the_session_is_usable_after_rollback(
        self, members: AsyncRepository[Member]
    ) -> None:
        await violate(members, "unique")
        assert await members.insert_many([{"email": "ok@example.com", "name": "Ok"}]) == 1


class TestUnnamedConstraints:
    """Columns of an unnamed constraint are the same on every backend and in the fake."""

    @pytest.mark.parametrize(
        ("first", "second", "columns"),
        [
            (
                {"code": "a", "kind": "k", "rank": 1},
                {"code": "a", "kind": "k", "rank": 2},
                ("badge_code",),
            ),
            (
                {"code": "a", "kind": "k", "rank": 1},
                {"code": "b", "kind": "k", "rank": 1},
                ("badge_kind", "badge_rank"),
            ),
        ],
        ids=["column", "composite"],
    )
    async def test_columns_agree_across_backends_and_the_fake(
        self,
        session: AsyncSession,
        first: dict[str, Any],
        second: dict[str, Any],
        columns: tuple[str, ...],
    ) -> None:
        from sqla_uow.testing import InMemoryRepository

        badges = AsyncRepository(session, model=Badge)
        await badges.create(first)
        with pytest.raises(ConflictError) as info:
            await badges.create(second)
        await session.rollback()
        assert info.value.kind == "unique"
        assert info.value.columns == columns
        assert await badges.count() == 0

        fake = InMemoryRepository(Badge)
        await fake.create(first)
        with pytest.raises(ConflictError) as fake_info:
            await fake.create(second)
        assert fake_info.value.columns == columns


class TestConflictErrorFromFlush:
    @pytest.mark.parametrize("case", ["unique", "foreign_key", "not_null", "check"])
    async def test_translates_the_error_of_a_failed_flush(
        self, backend: str, session: AsyncSession, case: str
    ) -> None:
        values: dict[str, Any] = {"email": "x@example.com", "name": "X"}
        values.update(
            {
                "unique": {"email": "taken@example.com"},
                "foreign_key": {"team_id": 999},
                "not_null": {"name": None},
                "check": {"age": -1},
            }[case]
        )
        session.add(Member(**values))
        with pytest.raises(sa_exc.DBAPIError) as info:
            await session.flush()
        await session.rollback()
        assert is_conflict_error(info.value)
        error = conflict_error(info.value, model=Member)
        assert error.kind == case
        assert error.code == expected_code(case, backend)

    async def test_other_database_errors_are_not_conflicts(self, session: AsyncSession) -> None:
        from sqlalchemy import text

        with pytest.raises(sa_exc.DBAPIError) as info:
            await session.execute(text("SELECT * FROM no_such_table"))
        await session.rollback()
        assert not is_conflict_error(info.value)
