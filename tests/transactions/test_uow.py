"""The unit of work: the scenarios of "Architecture Patterns with Python" ch. 6, async."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from sqlalchemy import MetaData, insert, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from models.shop import Base, Order, Product, User
from sqla_uow import (
    AbstractUnitOfWork,
    AsyncRepository,
    Propagation,
    SQLAlchemyUnitOfWork,
    TransactionManager,
    transactional,
)
from sqla_uow.exceptions import (
    ConflictError,
    IllegalTransactionStateError,
    RollbackOnlyError,
    TransactionRequiredError,
)


class UserRepository(AsyncRepository[User]):
    async def get_by_email(self, email: str) -> User | None:
        return await self.find_one(email=email)


class ProductRepository(AsyncRepository[Product]):
    pass


class ShopUnitOfWork(SQLAlchemyUnitOfWork):
    users: UserRepository
    orders: AsyncRepository[Order]
    products: ProductRepository


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


async def user_names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(User.name).order_by(User.id))
        return list(rows.scalars())


async def insert_user(engine: AsyncEngine, email: str, name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(User).values(email=email, name=name))


async def create_then_fail(
    tm: TransactionManager,
    name: str,
    *,
    autocommit: bool = True,
    propagation: Propagation = Propagation.REQUIRED,
) -> None:
    """Create the user *name* in a unit of work, then raise ``ValueError("<name> fails")``."""
    async with ShopUnitOfWork(tm, autocommit=autocommit, propagation=propagation) as uow:
        await uow.users.create(email=f"{name}@example.com", name=name)
        raise ValueError(f"{name} fails")


class TestCosmicPythonScenarios:
    async def test_uow_can_retrieve_a_user_and_change_it(self, tm: TransactionManager) -> None:
        await insert_user(tm.engine, "ann@example.com", "Ann")
        async with ShopUnitOfWork(tm) as uow:
            user = await uow.users.get_by_email("ann@example.com")
            assert user is not None
            user.name = "Ann Smith"
            await uow.commit()
        assert await user_names(tm.engine) == ["Ann Smith"]

    async def test_rolls_back_uncommitted_work_by_default(self, tm: TransactionManager) -> None:
        async with ShopUnitOfWork(tm, autocommit=False) as uow:
            await uow.users.create(email="ann@example.com", name="Ann")
        assert await user_names(tm.engine) == []

    async def test_rolls_back_on_error(self, tm: TransactionManager) -> None:
        class MyError(Exception):
            pass

        async def do_something_that_fails() -> None:
            async with ShopUnitOfWork(tm) as uow:
                await uow.users.create(email="ann@example.com", name="Ann")
                raise MyError

        with pytest.raises(MyError):
            await do_something_that_fails()
        assert await user_names(tm.engine) == []

    @pytest.mark.backends("postgresql")
    async def test_concurrent_updates_to_version_are_not_allowed(
        self, tm: TransactionManager
    ) -> None:
        async with ShopUnitOfWork(tm) as uow:
            await uow.products.create(sku="LAMP", stock=10)
        loaded = asyncio.Barrier(2) if hasattr(asyncio, "Barrier") else None

        async def take_one() -> None:
            async with ShopUnitOfWork(tm) as uow:
                product = await uow.products.get_one("LAMP")
                if loaded is not None:
                    await loaded.wait()  # both read version 1 before either writes
                else:
                    await asyncio.sleep(0.2)
                product.stock -= 1

        results = await asyncio.gather(take_one(), take_one(), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1
        assert isinstance(failures[0], ConflictError)
        assert failures[0].kind == "stale"
        assert isinstance(failures[0].__cause__, StaleDataError)
        async with ShopUnitOfWork(tm) as uow:
            product = await uow.products.get_one("LAMP")
            assert (product.version_number, product.stock) == (2, 9)

    @pytest.mark.backends("postgresql")
    async def test_select_for_update_serialises_concurrent_updates(
        self, tm: TransactionManager
    ) -> None:
        async with ShopUnitOfWork(tm) as uow:
            await uow.products.create(sku="LAMP", stock=10)

        async def take_one() -> None:
            async with ShopUnitOfWork(tm) as uow:
                product = await uow.products.get("LAMP", for_update=True)
                assert product is not None
                await asyncio.sleep(0.05)
                product.stock -= 1

        await asyncio.gather(take_one(), take_one(), take_one())
        async with ShopUnitOfWork(tm) as uow:
            product = await uow.products.get_one("LAMP")
            assert (product.version_number, product.stock) == (4, 7)


class TestRepositories:
    async def test_are_bound_to_the_session_of_the_unit_of_work(
        self, tm: TransactionManager
    ) -> None:
        async with ShopUnitOfWork(tm) as uow:
            assert isinstance(uow.users, UserRepository)
            assert uow.users.session is uow.session
            assert uow.orders.model is Order
            assert uow.orders.session is uow.session
            assert tm.session is uow.session

    async def test_write_together_in_one_transaction(self, tm: TransactionManager) -> None:
        async with ShopUnitOfWork(tm) as uow:
            user = await uow.users.create(email="a@example.com", name="A")
            await uow.orders.create(user_id=user.id, title="Book", price=12.5)
        async with ShopUnitOfWork(tm) as uow:
            assert await uow.orders.count(user_id=user.id) == 1

    async def test_are_unavailable_outside_the_block(self, tm: TransactionManager) -> None:
        uow = ShopUnitOfWork(tm)
        with pytest.raises(TransactionRequiredError, match="inside `async with uow:`"):
            uow.users  # noqa: B018
        with pytest.raises(TransactionRequiredError, match="inside `async with uow:`"):
            uow.session  # noqa: B018
        async with uow:
            pass
        with pytest.raises(TransactionRequiredError):
            uow.users  # noqa: B018
        with pytest.raises(AttributeError, match="no attribute 'nothing'"):
            uow.nothing  # noqa: B018


class RepositoryWithoutModel(AsyncRepository[Any]):
    pass


class BrokenUnitOfWork(SQLAlchemyUnitOfWork):
    users: UserRepository
    broken: RepositoryWithoutModel


class TestBrokenRepositories:
    async def test_a_repository_that_cannot_be_built_ends_the_transaction(
        self, tm: TransactionManager
    ) -> None:
        uow = BrokenUnitOfWork(tm)
        with pytest.raises(TypeError, match=r"not a mapped class|has no model"):
            await uow.__aenter__()
        assert not uow.active
        assert not tm.in_transaction
        assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


class TestCommitAndRollback:
    async def test_commit_in_the_middle_keeps_the_work_done_so_far(
        self, tm: TransactionManager
    ) -> None:
        async def fail_after_commit() -> None:
            async with ShopUnitOfWork(tm) as uow:
                await uow.users.create(email="a@example.com", name="kept")
                await uow.commit()
                await uow.users.create(email="b@example.com", name="lost")
                raise RuntimeError("after the commit")

        with pytest.raises(RuntimeError, match="after the commit"):
            await fail_after_commit()
        assert await user_names(tm.engine) == ["kept"]

    async def test_rollback_in_the_middle_undoes_only_the_work_since_the_last_commit(
        self, tm: TransactionManager
    ) -> None:
        async with ShopUnitOfWork(tm) as uow:
            await uow.users.create(email="a@example.com", name="first")
            await uow.commit()
            await uow.users.create(email="b@example.com", name="undone")
            await uow.rollback()
            await uow.users.create(email="c@example.com", name="last")
        assert await user_names(tm.engine) == ["first", "last"]

    async def test_explicit_style_keeps_only_committed_work(self, tm: TransactionManager) -> None:
        async with ShopUnitOfWork(tm, autocommit=False) as uow:
            await uow.users.create(email="a@example.com", name="committed")
            await uow.commit()
            await uow.users.create(email="b@example.com", name="not committed")
        assert await user_names(tm.engine) == ["committed"]

    async def test_commit_in_the_middle_runs_on_commit_callbacks(
        self, tm: TransactionManager
    ) -> None:
        seen: list[str] = []
        async with ShopUnitOfWork(tm) as uow:
            tm.on_commit(lambda: seen.append("first commit"))
            await uow.commit()
            assert seen == ["first commit"]
            tm.on_commit(lambda: seen.append("exit"))
        assert seen == ["first commit", "exit"]

    @pytest.mark.backends("postgresql")
    async def test_the_next_transaction_keeps_the_isolation_level(
        self, tm: TransactionManager
    ) -> None:
        async with ShopUnitOfWork(tm, isolation_level="SERIALIZABLE") as uow:
            await uow.commit()
            level = await uow.session.scalar(text("SHOW transaction_isolation"))
        assert level == "serializable"

    async def test_commit_and_rollback_outside_the_block_raise(
        self, tm: TransactionManager
    ) -> None:
        uow = ShopUnitOfWork(tm)
        with pytest.raises(TransactionRequiredError, match="commit"):
            await uow.commit()
        with pytest.raises(TransactionRequiredError, match="rollback"):
            await uow.rollback()


class TestLifecycle:
    async def test_can_be_used_again_after_its_block(self, tm: TransactionManager) -> None:
        uow = ShopUnitOfWork(tm)
        async with uow:
            await uow.users.create(email="a@example.com", name="A")
            first = uow.session
        async with uow:
            await uow.users.create(email="b@example.com", name="B")
            assert uow.session is not first
        assert await user_names(tm.engine) == ["A", "B"]

    async def test_entering_it_while_active_raises(self, tm: TransactionManager) -> None:
        uow = ShopUnitOfWork(tm)
        async with uow:
            with pytest.raises(IllegalTransactionStateError, match="already active"):
                await uow.__aenter__()
            assert uow.active
        assert not uow.active

    def test_rejects_a_propagation_without_a_transaction(self, tm: TransactionManager) -> None:
        with pytest.raises(ValueError, match=r"Propagation\.REQUIRES_NEW"):
            ShopUnitOfWork(tm, propagation=Propagation.SUPPORTS)

    def test_rejects_an_unknown_isolation_level_before_any_sql(
        self, tm: TransactionManager
    ) -> None:
        with pytest.raises(ValueError, match="unknown isolation level"):
            ShopUnitOfWork(tm, isolation_level="READ SOMETHING")


class TestJoiningAnOuterTransaction:
    async def test_commit_only_flushes_and_the_owner_commits(self, tm: TransactionManager) -> None:
        async def fail_outer() -> None:
            async with tm.transaction() as outer:
                async with ShopUnitOfWork(tm) as uow:
                    assert uow.session is outer
                    await uow.users.create(email="a@example.com", name="A")
                    await uow.commit()
                assert await user_names(tm.engine) == []  # not committed yet
                raise RuntimeError("the owner fails")

        with pytest.raises(RuntimeError, match="the owner fails"):
            await fail_outer()
        assert await user_names(tm.engine) == []

    async def test_a_failure_marks_the_transaction_rollback_only(
        self, tm: TransactionManager
    ) -> None:
        async def owner_swallows() -> None:
            async with tm.transaction():
                tm.session.add(User(email="o@example.com", name="outer"))
                with contextlib.suppress(ValueError):
                    await create_then_fail(tm, "joined")

        with pytest.raises(RollbackOnlyError):
            await owner_swallows()
        assert await user_names(tm.engine) == []

    async def test_a_failing_flush_at_commit_marks_the_transaction_rollback_only(
        self, tm: TransactionManager
    ) -> None:
        await insert_user(tm.engine, "taken@example.com", "Taken")

        async def joined_uow() -> None:
            async with ShopUnitOfWork(tm) as uow:
                uow.session.add(User(email="taken@example.com", name="Again"))
                await uow.commit()

        async def owner_swallows() -> None:
            async with tm.transaction():
                with contextlib.suppress(ConflictError):
                    await joined_uow()

        with pytest.raises(RollbackOnlyError) as caught:
            await owner_swallows()
        assert isinstance(caught.value.__cause__, IntegrityError)

    async def test_a_nested_unit_of_work_recovers_on_its_own(self, tm: TransactionManager) -> None:
        async with ShopUnitOfWork(tm) as uow:
            await uow.users.create(email="a@example.com", name="kept")
            with pytest.raises(ValueError, match="lost fails"):
                await create_then_fail(tm, "lost", propagation=Propagation.NESTED)
        assert await user_names(tm.engine) == ["kept"]

    async def test_a_transactional_service_joins_the_unit_of_work(
        self, tm: TransactionManager
    ) -> None:
        @transactional(tm)
        async def register(email: str) -> AsyncSession:
            tm.session.add(User(email=email, name="via service"))
            return tm.session

        async with ShopUnitOfWork(tm) as uow:
            assert await register("s@example.com") is uow.session
            assert await uow.users.count() == 1
        assert await user_names(tm.engine) == ["via service"]


class TestAbstractUnitOfWork:
    def test_cannot_be_instantiated(self) -> None:
        with pytest.raises(TypeError):
            AbstractUnitOfWork()  # type: ignore[abstract]

    async def test_a_minimal_implementation_rolls_back_on_error(self) -> None:
        class RecordingUnitOfWork(AbstractUnitOfWork):
            def __init__(self) -> None:
                self.events: list[str] = []

            async def commit(self) -> None:
                self.events.append("commit")

            async def rollback(self) -> None:
                self.events.append("rollback")

        uow = RecordingUnitOfWork()

        async def fail() -> None:
            async with uow:
                raise KeyError("boom")

        with pytest.raises(KeyError):
            await fail()
        async with uow as entered:
            assert entered is uow
        assert uow.events == ["rollback"]


class TestObjectsAfterTheUnitOfWork:
    async def test_an_object_read_in_an_explicit_style_unit_of_work_stays_readable(
        self, tm: TransactionManager
    ) -> None:
        await insert_user(tm.engine, "a@example.com", "Ann")
        async with ShopUnitOfWork(tm, autocommit=False) as uow:
            user = await uow.users.get_by_email("a@example.com")
        assert user is not None
        assert user.name == "Ann"

    async def test_a_committed_object_stays_readable_after_a_later_rollback(
        self, tm: TransactionManager
    ) -> None:
        async with ShopUnitOfWork(tm, autocommit=False) as uow:
            user = await uow.users.create(email="a@example.com", name="Ann")
            await uow.commit()
            await uow.rollback()
            assert user.name == "Ann"
        assert user.email == "a@example.com"

    async def test_a_new_object_of_discarded_work_does_not_look_persisted(
        self, tm: TransactionManager
    ) -> None:
        async with ShopUnitOfWork(tm, autocommit=False) as uow:
            user = await uow.users.create(email="a@example.com", name="Ann")
        assert sa_inspect(user).transient
        assert await user_names(tm.engine) == []

    async def test_a_changed_object_of_discarded_work_keeps_no_stale_values(
        self, tm: TransactionManager
    ) -> None:
        await insert_user(tm.engine, "a@example.com", "Ann")
        async with ShopUnitOfWork(tm, autocommit=False) as uow:
            user = await uow.users.get_by_email("a@example.com")
            assert user is not None
            user.name = "changed"
            await uow.session.flush()
        assert "name" in sa_inspect(user).expired_attributes
        assert await user_names(tm.engine) == ["Ann"]


class TestOnCommitAfterACommitInTheMiddle:
    async def test_callbacks_run_outside_the_next_transaction(self, tm: TransactionManager) -> None:
        seen: list[bool] = []

        @transactional(tm)
        async def insert_audit() -> None:
            tm.session.add(User(email="audit@example.com", name="audit"))

        async def audit() -> None:
            seen.append(tm.in_transaction)
            await insert_audit()  # a transaction of its own, not the unit of work's next one

        async def commit_then_fail() -> None:
            async with ShopUnitOfWork(tm, autocommit=False) as uow:
                await uow.users.create(email="a@example.com", name="first")
                tm.on_commit(audit)
                await uow.commit()
                raise RuntimeError("later")

        with pytest.raises(RuntimeError, match="later"):
            await commit_then_fail()
        assert seen == [False]
        assert sorted(await user_names(tm.engine)) == ["audit", "first"]


class SessionClashUnitOfWork(SQLAlchemyUnitOfWork):
    session: AsyncRepository[User]  # type: ignore[assignment]


class CommitClashUnitOfWork(SQLAlchemyUnitOfWork):
    commit: UserRepository  # type: ignore[assignment]


class TestRepositoryNames:
    @pytest.mark.parametrize("uow_class", [SessionClashUnitOfWork, CommitClashUnitOfWork])
    async def test_a_name_of_the_unit_of_work_is_refused_before_any_sql(
        self, tm: TransactionManager, uow_class: type[SQLAlchemyUnitOfWork]
    ) -> None:
        with pytest.raises(TypeError, match=r"reserved names: .*session"):
            uow_class(tm)
        assert not tm.in_transaction
        assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


class TestExplicitStyleInsideAnOuterTransaction:
    async def test_work_not_committed_is_rolled_back_at_exit(self, tm: TransactionManager) -> None:
        async with tm.transaction() as session:
            session.add(User(email="o@example.com", name="outer"))
            async with ShopUnitOfWork(tm, autocommit=False) as uow:
                await uow.users.create(email="i@example.com", name="inner")
        assert await user_names(tm.engine) == ["outer"]

    async def test_committed_work_is_committed_by_the_owner(self, tm: TransactionManager) -> None:
        async with tm.transaction():
            async with ShopUnitOfWork(tm, autocommit=False) as uow:
                await uow.users.create(email="i@example.com", name="inner")
                await uow.commit()
                await uow.users.create(email="j@example.com", name="not committed")
            tm.session.add(User(email="o@example.com", name="outer"))
        assert sorted(await user_names(tm.engine)) == ["inner", "outer"]

    async def test_a_failure_still_marks_the_transaction_rollback_only(
        self, tm: TransactionManager
    ) -> None:
        async def owner_swallows() -> None:
            async with tm.transaction() as session:
                session.add(User(email="o@example.com", name="outer"))
                with contextlib.suppress(ValueError):
                    await create_then_fail(tm, "inner", autocommit=False)

        with pytest.raises(RollbackOnlyError):
            await owner_swallows()
        assert await user_names(tm.engine) == []


class TestAFailedCommit:
    @pytest.mark.parametrize(
        ("inside", "propagation"),
        [(False, Propagation.REQUIRED), (True, Propagation.REQUIRED), (True, Propagation.NESTED)],
        ids=["root", "joined explicit style", "nested"],
    )
    async def test_rolls_back_and_the_unit_of_work_goes_on(
        self, tm: TransactionManager, inside: bool, propagation: Propagation
    ) -> None:
        await insert_user(tm.engine, "taken@example.com", "Taken")
        async with (
            tm.transaction() if inside else contextlib.nullcontext(),
            ShopUnitOfWork(tm, propagation=propagation, autocommit=False) as uow,
        ):
            uow.session.add(User(email="taken@example.com", name="Again"))
            with pytest.raises(ConflictError):
                await uow.commit()
            await uow.users.create(email="b@example.com", name="after")
            await uow.commit()
        assert sorted(await user_names(tm.engine)) == ["Taken", "after"]
