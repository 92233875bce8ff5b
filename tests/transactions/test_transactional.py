"""@transactional: scopes around coroutine functions, and retries under real contention."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from models.accounts import Account
from sqla_uow import (
    Propagation,
    TransactionManager,
    current_manager,
    set_default_manager,
    transactional,
    use_default_manager,
)
from sqla_uow._errors import is_retryable_error
from sqla_uow.exceptions import IllegalTransactionStateError, TransactionRequiredError


@pytest.fixture
def default_tm(tm: TransactionManager) -> Iterator[TransactionManager]:
    """*tm* as the default manager for this test only."""
    with use_default_manager(tm):
        yield tm


@transactional
async def open_account(name: str, *, balance: int = 0) -> Account:
    """A module-level service decorated bare: the manager is found at each call."""
    account = Account(name=name, balance=balance)
    current_manager().session.add(account)
    return account


class Bank:
    """A service whose methods are decorated in the class body, with options and without."""

    def __init__(self, fee: int) -> None:
        self.fee = fee
        self.attempts = 0

    @transactional(retries=2, retry_base_delay=0)
    async def open(self, name: str) -> Bank:
        current_manager().session.add(Account(name=name, balance=-self.fee))
        return self

    @transactional(propagation=Propagation.MANDATORY)
    async def charge(self, name: str) -> None:
        session = current_manager().session
        account = await session.scalar(select(Account).where(Account.name == name))
        assert account is not None
        account.balance -= self.fee

    @transactional(read_only=True)
    async def total(self) -> int:
        return await current_manager().session.scalar(select(func.sum(Account.balance))) or 0

    @transactional(isolation_level="REPEATABLE READ", retries=2, retry_base_delay=0)
    async def withdraw(self, name: str, amount: int) -> None:
        self.attempts += 1
        session = current_manager().session
        account = await session.scalar(select(Account).where(Account.name == name))
        assert account is not None
        if self.attempts == 1:
            await write_concurrently(current_manager().engine, name)
        account.balance -= amount
        await session.flush()


async def balances(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(Account.name, Account.balance))
        return {row.name: row.balance for row in rows}


async def open_accounts(tm: TransactionManager, **accounts: int) -> None:
    async with tm.transaction() as session:
        session.add_all(Account(name=name, balance=b) for name, b in accounts.items())


class TestDecoration:
    async def test_runs_the_function_in_a_committed_transaction(
        self, tm: TransactionManager
    ) -> None:
        @transactional(tm)
        async def open_account(name: str, *, balance: int = 0) -> Account:
            account = Account(name=name, balance=balance)
            tm.session.add(account)
            return account

        account = await open_account("Ann", balance=10)
        assert account.id == 1
        assert await balances(tm.engine) == {"Ann": 10}

    def test_keeps_the_signature_and_name(self, tm: TransactionManager) -> None:
        async def open_account(name: str, *, balance: int = 0) -> int:
            return balance

        wrapped = transactional(tm)(open_account)
        assert wrapped.__name__ == "open_account"
        assert inspect.signature(wrapped) == inspect.signature(open_account)
        assert inspect.iscoroutinefunction(wrapped)

    async def test_works_on_methods(self, tm: TransactionManager) -> None:
        class Bank:
            def __init__(self, fee: int) -> None:
                self.fee = fee

            @transactional(tm)
            async def open(self, name: str) -> None:
                tm.session.add(Account(name=name, balance=-self.fee))

        await Bank(fee=2).open("Ann")
        assert await balances(tm.engine) == {"Ann": -2}

    async def test_joins_the_transaction_of_its_caller(self, tm: TransactionManager) -> None:
        @transactional(tm)
        async def current_session() -> AsyncSession:
            return tm.session

        async with tm.transaction() as session:
            assert await current_session() is session

    async def test_rolls_back_when_the_function_raises(self, tm: TransactionManager) -> None:
        @transactional(tm)
        async def fail() -> None:
            tm.session.add(Account(name="Ann"))
            await tm.session.flush()
            raise ValueError("declined")

        with pytest.raises(ValueError, match="declined"):
            await fail()
        assert await balances(tm.engine) == {}

    async def test_commits_when_an_exception_of_no_rollback_for_escapes(
        self, tm: TransactionManager
    ) -> None:
        class Declined(Exception):
            pass

        @transactional(tm, no_rollback_for=(Declined,))
        async def record_attempt(name: str, *, fail: type[Exception] | None) -> None:
            tm.session.add(Account(name=name))
            if fail is not None:
                raise fail("declined")

        with pytest.raises(Declined, match="declined"):
            await record_attempt("Ann", fail=Declined)
        with pytest.raises(ValueError, match="declined"):
            await record_attempt("Bob", fail=ValueError)
        assert await balances(tm.engine) == {"Ann": 0}

    async def test_no_rollback_for_in_a_joined_call_leaves_the_transaction_to_commit(
        self, tm: TransactionManager
    ) -> None:
        @transactional(tm, no_rollback_for=(LookupError,))
        async def lookup() -> None:
            tm.session.add(Account(name="Ann"))
            raise KeyError("missing")

        async with tm.transaction():
            with pytest.raises(KeyError):
                await lookup()
            tm.session.add(Account(name="Bob"))
        assert await balances(tm.engine) == {"Ann": 0, "Bob": 0}

    def test_no_rollback_for_takes_a_tuple_of_exception_classes(
        self, tm: TransactionManager
    ) -> None:
        for wrong in (ValueError, (ValueError, "x"), [KeyError]):
            with pytest.raises(TypeError, match="no_rollback_for"):
                transactional(tm, no_rollback_for=wrong)  # type: ignore[arg-type]

    async def test_applies_propagation(self, tm: TransactionManager) -> None:
        @transactional(tm, propagation=Propagation.MANDATORY)
        async def needs_a_transaction() -> None:
            pass

        with pytest.raises(TransactionRequiredError):
            await needs_a_transaction()

    async def test_applies_read_only(self, tm: TransactionManager) -> None:
        @transactional(tm, read_only=True)
        async def write() -> None:
            pass

        async with tm.transaction(read_only=True):
            await write()
        async with tm.transaction():
            await write()  # a read-only scope may join a read-write transaction

        @transactional(tm)
        async def read_write() -> None:
            pass

        async with tm.transaction(read_only=True):
            with pytest.raises(IllegalTransactionStateError):
                await read_write()

    def test_rejects_a_plain_function(self, tm: TransactionManager) -> None:
        def not_async() -> None:
            pass

        with pytest.raises(TypeError, match="coroutine functions"):
            transactional(tm)(not_async)  # type: ignore[arg-type]

    def test_rejects_negative_retries(self, tm: TransactionManager) -> None:
        with pytest.raises(ValueError, match="retries"):
            transactional(tm, retries=-1)

    def test_rejects_an_unknown_isolation_level_at_decoration(self, tm: TransactionManager) -> None:
        with pytest.raises(ValueError, match="unknown isolation level"):
            transactional(tm, isolation_level="SNAPSHOT")


class TestManagerFoundAtCallTime:
    async def test_a_bare_module_function_uses_the_default_manager(
        self, default_tm: TransactionManager
    ) -> None:
        account = await open_account("Ann", balance=10)
        assert account.id == 1
        assert await balances(default_tm.engine) == {"Ann": 10}

    def test_a_bare_function_keeps_its_signature_and_name(self) -> None:
        assert open_account.__name__ == "open_account"
        assert str(inspect.signature(open_account)) == (
            "(name: 'str', *, balance: 'int' = 0) -> 'Account'"
        )
        assert inspect.iscoroutinefunction(open_account)

    async def test_a_method_decorated_in_the_class_body_gets_self_untouched(
        self, default_tm: TransactionManager
    ) -> None:
        bank = Bank(fee=2)
        assert await bank.open("Ann") is bank
        assert await bank.total() == -2
        assert await balances(default_tm.engine) == {"Ann": -2}

    async def test_propagation_applies_without_a_manager(
        self, default_tm: TransactionManager
    ) -> None:
        await open_account("Ann", balance=10)
        bank = Bank(fee=3)
        with pytest.raises(TransactionRequiredError, match="MANDATORY"):
            await bank.charge("Ann")
        async with default_tm.transaction():
            await bank.charge("Ann")
        assert await balances(default_tm.engine) == {"Ann": 7}

    async def test_read_only_applies_without_a_manager(
        self, default_tm: TransactionManager
    ) -> None:
        bank = Bank(fee=1)
        async with default_tm.transaction(read_only=True):
            assert await bank.total() == 0  # a read-only scope joins
            with pytest.raises(IllegalTransactionStateError, match="read-only"):
                await bank.open("Ann")  # a read-write one cannot
        assert await balances(default_tm.engine) == {}

    async def test_the_manager_of_the_enclosing_scope_comes_first(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        other = TransactionManager(engine)
        with use_default_manager(other):
            async with tm.transaction() as session:
                account = await open_account("Ann")
                assert account in session  # joined tm's transaction, not the default's
                assert current_manager() is tm
            assert current_manager() is other
        assert await balances(engine) == {"Ann": 0}

    async def test_a_task_created_inside_a_scope_uses_its_manager(
        self, tm: TransactionManager
    ) -> None:
        async def in_a_child_task() -> TransactionManager:
            assert not tm.in_transaction  # the child does not share the transaction
            return current_manager()

        with use_default_manager(None):
            async with tm.transaction(read_only=True):
                found = await asyncio.create_task(in_a_child_task())
        assert found is tm

    async def test_scopes_of_two_managers_make_the_call_ambiguous(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        other = TransactionManager(engine)
        with use_default_manager(tm):
            async with (
                tm.transaction(),
                other.transaction(propagation=Propagation.NOT_SUPPORTED),
            ):
                with pytest.raises(IllegalTransactionStateError, match="2 managers") as info:
                    await open_account("Ann")
                assert "@transactional(tm)" in str(info.value)
        assert await balances(engine) == {}

    async def test_without_any_manager_the_call_says_how_to_set_one(
        self, tm: TransactionManager
    ) -> None:
        with use_default_manager(None), pytest.raises(TransactionRequiredError) as info:
            await open_account("Ann")
        message = str(info.value)
        assert "set_default_manager(tm)" in message
        assert "@transactional(tm)" in message
        with pytest.raises(TransactionRequiredError, match="no TransactionManager"):
            await open_account("Ann")  # no process-wide default is set in the suite
        assert await balances(tm.engine) == {}

    async def test_the_process_default_is_set_and_reset(self, tm: TransactionManager) -> None:
        assert set_default_manager(tm) is None
        try:
            await open_account("Ann")
            assert current_manager() is tm
            with use_default_manager(None), pytest.raises(TransactionRequiredError):
                await open_account("Bob")  # hidden inside the block
        finally:
            assert set_default_manager(None) is tm
        with pytest.raises(TransactionRequiredError):
            await open_account("Cid")
        assert await balances(tm.engine) == {"Ann": 0}

    async def test_the_context_default_ends_with_its_block(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        other = TransactionManager(engine)
        with use_default_manager(tm) as given:
            assert given is tm
            with use_default_manager(other):
                assert current_manager() is other
            assert current_manager() is tm
        with pytest.raises(TransactionRequiredError):
            current_manager()

    async def test_the_manager_may_be_given_by_keyword(self, tm: TransactionManager) -> None:
        @transactional(tm=tm, read_only=True)
        async def count() -> int:
            return await tm.session.scalar(select(func.count(Account.id))) or 0

        with use_default_manager(None):
            assert await count() == 0

    async def test_an_unknown_isolation_level_fails_at_the_call(
        self, default_tm: TransactionManager
    ) -> None:
        @transactional(isolation_level="SNAPSHOT")
        async def never_runs() -> None:
            raise AssertionError("the scope must not begin")

        with pytest.raises(ValueError, match="unknown isolation level"):
            await never_runs()

    def test_rejects_bad_arguments_at_decoration(self) -> None:
        with pytest.raises(TypeError, match="TransactionManager"):
            transactional(42)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="propagation"):
            transactional(propagation="REQUIRED")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="isolation_level"):
            transactional(isolation_level=1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="read_only"):
            transactional(read_only=1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="retries"):
            transactional(retries=-1)
        with pytest.raises(TypeError, match="coroutine functions"):
            transactional(lambda: None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="TransactionManager or None"):
            set_default_manager("sqlite://")  # type: ignore[arg-type]


async def write_concurrently(engine: AsyncEngine, name: str) -> None:
    """Commit a change to *name*'s row from another connection, outside the manager."""
    async with engine.begin() as conn:
        await conn.execute(
            update(Account).where(Account.name == name).values(balance=Account.balance + 100)
        )


async def spend_after_a_concurrent_write(tm: TransactionManager, attempts: list[int]) -> None:
    """Take 1 from the first account after another connection has changed its row."""
    attempts.append(1)
    account = await tm.session.scalar(select(Account))
    assert account is not None
    await write_concurrently(tm.engine, "ann")
    account.balance -= 1
    await tm.session.flush()


@pytest.mark.backends("postgresql")
class TestRetries:
    async def test_retries_a_serialization_failure_of_a_statement(
        self, tm: TransactionManager
    ) -> None:
        await open_accounts(tm, ann=10)
        attempts: list[int] = []
        committed: list[int] = []

        @transactional(tm, isolation_level="REPEATABLE READ", retries=2, retry_base_delay=0)
        async def withdraw(amount: int) -> None:
            attempt = len(attempts) + 1
            attempts.append(attempt)
            tm.on_commit(lambda: committed.append(attempt))
            session = tm.session
            account = await session.scalar(select(Account).where(Account.name == "ann"))
            assert account is not None
            if len(attempts) == 1:
                await write_concurrently(tm.engine, "ann")
            account.balance -= amount
            await session.flush()  # 40001: could not serialize access due to concurrent update

        await withdraw(5)
        assert attempts == [1, 2]
        assert committed == [2]  # the failed attempt's callbacks were dropped
        assert await balances(tm.engine) == {"ann": 105}

    async def test_retries_a_serialization_failure_at_commit(self, tm: TransactionManager) -> None:
        await open_accounts(tm, ann=50, bob=50)
        bodies_completed: list[int] = []

        @transactional(tm, isolation_level="SERIALIZABLE", retries=2, retry_base_delay=0)
        async def withdraw_from_ann_if_covered(amount: int) -> None:
            session = tm.session
            total = await session.scalar(select(func.sum(Account.balance)))
            assert total is not None
            if total >= amount:
                await session.execute(
                    update(Account)
                    .where(Account.name == "ann")
                    .values(balance=Account.balance - amount)
                )
            if not bodies_completed:
                # A concurrent SERIALIZABLE transaction reads the same rows, writes
                # bob's and commits first: write skew, detected at our COMMIT.
                async with tm.engine.connect() as conn:
                    conn = await conn.execution_options(isolation_level="SERIALIZABLE")
                    async with conn.begin():
                        await conn.execute(select(func.sum(Account.balance)))
                        await conn.execute(
                            update(Account)
                            .where(Account.name == "bob")
                            .values(balance=Account.balance - 10)
                        )
            bodies_completed.append(1)

        await withdraw_from_ann_if_covered(80)
        assert len(bodies_completed) == 2  # both bodies finished: the first failed at COMMIT
        assert await balances(tm.engine) == {"ann": -30, "bob": 40}

    async def test_gives_up_after_the_last_retry(self, tm: TransactionManager) -> None:
        await open_accounts(tm, ann=10)
        attempts: list[int] = []

        @transactional(tm, isolation_level="REPEATABLE READ", retries=1, retry_base_delay=0)
        async def always_conflicting() -> None:
            await spend_after_a_concurrent_write(tm, attempts)

        with pytest.raises(Exception, match="could not serialize") as caught:
            await always_conflicting()
        assert is_retryable_error(caught.value)
        assert len(attempts) == 2

    async def test_a_joined_call_does_not_retry_on_its_own(self, tm: TransactionManager) -> None:
        await open_accounts(tm, ann=10)
        attempts: list[int] = []

        @transactional(tm, retries=3, retry_base_delay=0)
        async def conflicting() -> None:
            await spend_after_a_concurrent_write(tm, attempts)

        with pytest.raises(Exception, match="could not serialize"):
            async with tm.transaction(isolation_level="REPEATABLE READ"):
                await conflicting()
        assert attempts == [1]

    async def test_concurrent_transfers_keep_the_total_under_real_contention(
        self, tm: TransactionManager
    ) -> None:
        await open_accounts(tm, a=100, b=100, c=100)
        attempts: list[str] = []

        @transactional(tm, isolation_level="SERIALIZABLE", retries=30, retry_base_delay=0.005)
        async def transfer(source: str, target: str, amount: int) -> None:
            attempts.append(source + target)
            session = tm.session
            rows = await session.scalars(select(Account).where(Account.name.in_([source, target])))
            accounts = {account.name: account for account in rows}
            await asyncio.sleep(0.01)  # let the other transfers read the same rows
            accounts[source].balance -= amount
            accounts[target].balance += amount

        transfers = [("a", "b", 10), ("b", "c", 20), ("c", "a", 30), ("a", "c", 5)] * 2
        await asyncio.gather(*(transfer(*t) for t in transfers))
        assert len(attempts) > len(transfers)  # some attempts failed and were retried
        final = await balances(tm.engine)
        assert sum(final.values()) == 300
        assert final == {"a": 130, "b": 80, "c": 90}

    async def test_retries_a_method_decorated_in_the_class_body(
        self, default_tm: TransactionManager
    ) -> None:
        await open_accounts(default_tm, ann=10)
        bank = Bank(fee=0)
        await bank.withdraw("ann", 5)
        assert bank.attempts == 2
        assert await balances(default_tm.engine) == {"ann": 105}

    async def test_a_read_only_serializable_call_needs_no_retry(
        self, tm: TransactionManager
    ) -> None:
        @transactional(tm, isolation_level="SERIALIZABLE", read_only=True, retries=1)
        async def report() -> str:
            return str(await tm.session.scalar(text("SHOW transaction_isolation")))

        assert await report() == "serializable"
