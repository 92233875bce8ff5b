"""`capture_on_commit` with an ordinary manager: callbacks of real commits, captured or run."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, MetaData, String
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository, Propagation, SQLAlchemyUnitOfWork, TransactionManager
from sqla_uow.testing import capture_on_commit


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "capture_notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(50))


class Notes(AsyncRepository[Note]):
    pass


class NotesUnitOfWork(SQLAlchemyUnitOfWork):
    notes: Notes


async def register_and_fail(tm: TransactionManager, propagation: Propagation) -> None:
    async with tm.transaction(propagation=propagation):
        tm.on_commit(lambda: None)
        raise RuntimeError


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
def tm(engine: AsyncEngine) -> TransactionManager:
    return TransactionManager(engine)


class TestCapture:
    async def test_captures_instead_of_running(self, tm: TransactionManager) -> None:
        ran: list[str] = []
        async with capture_on_commit(tm) as callbacks:
            async with tm.transaction() as session:
                session.add(Note(text="a"))
                tm.on_commit(lambda: ran.append("a"))
            assert len(callbacks) == 1
        assert ran == []
        async with NotesUnitOfWork(tm) as uow:
            assert [n.text for n in await uow.notes.list()] == ["a"]  # really committed

    async def test_rolled_back_callbacks_are_not_captured(self, tm: TransactionManager) -> None:
        async with capture_on_commit(tm) as callbacks:
            with pytest.raises(RuntimeError):
                await register_and_fail(tm, Propagation.REQUIRED)
            async with tm.transaction():
                with pytest.raises(RuntimeError):
                    await register_and_fail(tm, Propagation.NESTED)
            assert callbacks == []

    async def test_execute_runs_them_in_order_with_the_ones_they_register(
        self, tm: TransactionManager
    ) -> None:
        ran: list[str] = []

        async def second() -> None:
            ran.append("second")
            async with tm.transaction():  # a callback may begin a transaction of its own
                tm.on_commit(lambda: ran.append("third"))

        async with capture_on_commit(tm, execute=True) as callbacks:
            async with NotesUnitOfWork(tm, autocommit=False) as uow:
                await uow.notes.create(text="a")
                tm.on_commit(lambda: ran.append("first"))
                tm.on_commit(second)
                await uow.commit()
            assert ran == []
        assert ran == ["first", "second", "third"]
        assert len(callbacks) == 3

    async def test_an_exception_in_the_block_runs_nothing(self, tm: TransactionManager) -> None:
        ran: list[str] = []

        async def commit_then_fail() -> None:
            async with capture_on_commit(tm, execute=True):
                async with tm.transaction():
                    tm.on_commit(lambda: ran.append("a"))
                raise LookupError

        with pytest.raises(LookupError):
            await commit_then_fail()
        assert ran == []

    async def test_a_failing_callback_propagates(self, tm: TransactionManager) -> None:
        ran: list[str] = []

        def boom() -> None:
            raise ValueError("mail server down")

        async def commit() -> None:
            async with capture_on_commit(tm, execute=True), tm.transaction():
                tm.on_commit(boom)
                tm.on_commit(lambda: ran.append("after"))

        with pytest.raises(ValueError, match="mail server down"):
            await commit()
        assert ran == []

    async def test_an_inner_block_hands_unexecuted_callbacks_to_the_outer(
        self, tm: TransactionManager
    ) -> None:
        ran: list[str] = []
        async with capture_on_commit(tm) as outer:
            async with capture_on_commit(tm) as inner, tm.transaction():
                tm.on_commit(lambda: ran.append("kept"))
            async with capture_on_commit(tm, execute=True), tm.transaction():
                tm.on_commit(lambda: ran.append("run"))
        assert len(inner) == 1
        assert outer == inner
        assert ran == ["run"]

    async def test_after_the_block_callbacks_run_at_commit_again(
        self, tm: TransactionManager
    ) -> None:
        ran: list[str] = []
        async with capture_on_commit(tm):
            pass
        async with tm.transaction():
            tm.on_commit(lambda: ran.append("a"))
        assert ran == ["a"]

    async def test_needs_a_transaction_manager(self) -> None:
        with pytest.raises(TypeError, match="needs a TransactionManager, not str"):
            async with capture_on_commit("tm"):  # type: ignore[arg-type]
                pass
