"""TransactionManager.on_commit: order, timing, dropping and failing callbacks."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from _accounts import committed_names
from sqlalchemy import event

from models.accounts import Account
from sqla_uow import Propagation, SQLAlchemyUnitOfWork, TransactionManager
from sqla_uow.exceptions import TransactionRequiredError


class TestOnCommit:
    async def test_runs_sync_and_async_callbacks_in_order_after_the_commit(
        self, tm: TransactionManager
    ) -> None:
        seen: list[Any] = []

        async def async_callback() -> None:
            seen.append(("async", await committed_names(tm.engine)))

        async with tm.transaction() as session:
            session.add(Account(name="Ann"))
            tm.on_commit(lambda: seen.append("first"))
            tm.on_commit(async_callback)
            tm.on_commit(lambda: seen.append("third"))
            assert seen == []
        assert seen == ["first", ("async", ["Ann"]), "third"]

    async def test_runs_outside_the_finished_scope(self, tm: TransactionManager) -> None:
        inside: list[bool] = []
        async with tm.transaction():
            tm.on_commit(lambda: inside.append(tm.in_transaction))
        assert inside == [False]

    async def test_callbacks_of_joined_scopes_wait_for_the_outermost_commit(
        self, tm: TransactionManager
    ) -> None:
        seen: list[str] = []
        async with tm.transaction():
            async with tm.transaction():
                tm.on_commit(lambda: seen.append("joined"))
            assert seen == []
        assert seen == ["joined"]

    async def test_are_dropped_on_rollback(self, tm: TransactionManager) -> None:
        seen: list[str] = []

        async def fail() -> None:
            async with tm.transaction():
                tm.on_commit(lambda: seen.append("never"))
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError, match="rolled back"):
            await fail()
        async with tm.transaction():
            pass
        assert seen == []

    async def test_are_dropped_with_a_rolled_back_savepoint(self, tm: TransactionManager) -> None:
        seen: list[str] = []

        async def failing_savepoint() -> None:
            async with tm.transaction(propagation=Propagation.NESTED):
                tm.on_commit(lambda: seen.append("dropped"))
                raise ValueError("savepoint fails")

        async with tm.transaction():
            tm.on_commit(lambda: seen.append("outer"))
            with pytest.raises(ValueError, match="savepoint fails"):
                await failing_savepoint()
            async with tm.transaction(propagation=Propagation.NESTED):
                tm.on_commit(lambda: seen.append("released"))
        assert seen == ["outer", "released"]

    async def test_run_at_the_commit_of_a_requires_new_transaction(
        self, tm: TransactionManager
    ) -> None:
        seen: list[str] = []
        async with tm.transaction(read_only=True):  # SQLite: leaves the write lock free
            async with tm.transaction(propagation=Propagation.REQUIRES_NEW):
                tm.on_commit(lambda: seen.append("inner"))
            assert seen == ["inner"]
            tm.on_commit(lambda: seen.append("outer"))
        assert seen == ["inner", "outer"]

    async def test_are_dropped_when_the_commit_fails(self, tm: TransactionManager) -> None:
        seen: list[str] = []

        def fail_commit(conn: object) -> None:
            raise RuntimeError("COMMIT failed")

        async def work() -> None:
            async with tm.transaction() as session:
                session.add(Account(name="Ann"))
                tm.on_commit(lambda: seen.append("never"))

        event.listen(tm.engine.sync_engine, "commit", fail_commit)
        try:
            with pytest.raises(RuntimeError, match="COMMIT failed"):
                await work()
        finally:
            event.remove(tm.engine.sync_engine, "commit", fail_commit)
        assert seen == []
        assert await committed_names(tm.engine) == []

    async def test_a_failing_callback_is_logged_and_the_others_still_run(
        self, tm: TransactionManager, caplog: pytest.LogCaptureFixture
    ) -> None:
        seen: list[str] = []

        def broken() -> None:
            raise LookupError("mail server down")

        async with tm.transaction() as session:
            session.add(Account(name="Ann"))
            tm.on_commit(broken)
            tm.on_commit(lambda: seen.append("after the broken one"))
        assert seen == ["after the broken one"]
        assert await committed_names(tm.engine) == ["Ann"]
        [record] = [r for r in caplog.records if r.name == "sqla_uow"]
        assert record.levelno == logging.ERROR
        assert "the transaction was committed" in record.getMessage()
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], LookupError)

    def test_outside_a_transaction_raises(self, tm: TransactionManager) -> None:
        with pytest.raises(TransactionRequiredError, match="on_commit"):
            tm.on_commit(lambda: None)

    async def test_inside_a_scope_without_a_transaction_raises(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction(propagation=Propagation.NOT_SUPPORTED):
            with pytest.raises(TransactionRequiredError, match="NOT_SUPPORTED"):
                tm.on_commit(lambda: None)

    async def test_rejects_what_is_not_callable(self, tm: TransactionManager) -> None:
        async with tm.transaction():
            with pytest.raises(TypeError, match="callable"):
                tm.on_commit("send mail")  # type: ignore[arg-type]


class TestOnRollback:
    async def test_runs_after_the_rollback_outside_the_scope(self, tm: TransactionManager) -> None:
        seen: list[Any] = []

        async def compensate() -> None:
            seen.append(("async", tm.in_transaction, await committed_names(tm.engine)))

        async def work() -> None:
            async with tm.transaction() as session:
                session.add(Account(name="Ann"))
                tm.on_rollback(lambda: seen.append("first"))
                tm.on_rollback(compensate)
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError, match="rolled back"):
            await work()
        assert seen == ["first", ("async", False, [])]

    async def test_are_dropped_at_commit(self, tm: TransactionManager) -> None:
        seen: list[str] = []
        async with tm.transaction() as session:
            session.add(Account(name="Ann"))
            tm.on_rollback(lambda: seen.append("never"))
        assert seen == []
        assert await committed_names(tm.engine) == ["Ann"]

    async def test_a_rolled_back_savepoint_runs_its_own_callbacks_only(
        self, tm: TransactionManager
    ) -> None:
        seen: list[str] = []
        async with tm.transaction() as session:
            tm.on_rollback(lambda: seen.append("outer"))

            async def work() -> None:
                async with tm.transaction(propagation=Propagation.NESTED):
                    session.add(Account(name="Bob"))
                    tm.on_rollback(lambda: seen.append("savepoint"))
                    raise ValueError("savepoint fails")

            with pytest.raises(ValueError, match="savepoint fails"):
                await work()
            assert seen == ["savepoint"]
            session.add(Account(name="Ann"))
        assert seen == ["savepoint"]
        assert await committed_names(tm.engine) == ["Ann"]

    async def test_a_released_savepoint_hands_them_to_the_transaction(
        self, tm: TransactionManager
    ) -> None:
        seen: list[str] = []

        async def work() -> None:
            async with tm.transaction():
                async with tm.transaction(propagation=Propagation.NESTED):
                    tm.on_rollback(lambda: seen.append("released savepoint"))
                assert seen == []
                raise RuntimeError("later")

        with pytest.raises(RuntimeError, match="later"):
            await work()
        assert seen == ["released savepoint"]

    async def test_a_joined_scope_registers_on_the_transaction(
        self, tm: TransactionManager
    ) -> None:
        seen: list[str] = []

        async def work() -> None:
            async with tm.transaction(), tm.transaction():
                tm.on_rollback(lambda: seen.append("joined"))
                raise RuntimeError("joined")

        with pytest.raises(RuntimeError, match="joined"):
            await work()
        assert seen == ["joined"]

    async def test_run_when_the_commit_fails(self, tm: TransactionManager) -> None:
        seen: list[str] = []

        def fail_commit(conn: object) -> None:
            raise RuntimeError("COMMIT failed")

        event.listen(tm.engine.sync_engine, "commit", fail_commit)
        try:

            async def work() -> None:
                async with tm.transaction() as session:
                    session.add(Account(name="Ann"))
                    tm.on_rollback(lambda: seen.append("compensated"))

            with pytest.raises(RuntimeError, match="COMMIT failed"):
                await work()
        finally:
            event.remove(tm.engine.sync_engine, "commit", fail_commit)
        assert seen == ["compensated"]
        assert await committed_names(tm.engine) == []

    async def test_run_at_a_unit_of_work_rollback_and_not_at_its_commit(
        self, tm: TransactionManager
    ) -> None:
        seen: list[str] = []
        async with SQLAlchemyUnitOfWork(tm) as uow:
            uow.session.add(Account(name="Ann"))
            tm.on_rollback(lambda: seen.append("rolled back"))
            await uow.rollback()
            assert seen == ["rolled back"]
            uow.session.add(Account(name="Bob"))
            tm.on_rollback(lambda: seen.append("never"))
            await uow.commit()
        assert seen == ["rolled back"]
        assert await committed_names(tm.engine) == ["Bob"]

    async def test_a_failing_callback_is_logged_and_the_others_still_run(
        self, tm: TransactionManager, caplog: pytest.LogCaptureFixture
    ) -> None:
        seen: list[str] = []

        def broken() -> None:
            raise LookupError("storage down")

        async def work() -> None:
            async with tm.transaction():
                tm.on_rollback(broken)
                tm.on_rollback(lambda: seen.append("after the broken one"))
                raise RuntimeError

        with pytest.raises(RuntimeError):
            await work()
        assert seen == ["after the broken one"]
        [record] = [r for r in caplog.records if r.name == "sqla_uow"]
        assert "the work was rolled back" in record.getMessage()
        assert isinstance(record.exc_info[1] if record.exc_info else None, LookupError)

    async def test_outside_a_transaction_or_not_callable_raises(
        self, tm: TransactionManager
    ) -> None:
        with pytest.raises(TransactionRequiredError, match="on_rollback"):
            tm.on_rollback(lambda: None)
        async with tm.transaction():
            with pytest.raises(TypeError, match="callable"):
                tm.on_rollback("delete file")  # type: ignore[arg-type]
