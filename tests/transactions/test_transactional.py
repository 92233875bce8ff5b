"""@transactional: scopes around coroutine functions, and retries under real contention."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from _accounts import Account
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sqla_uow import Propagation, TransactionManager, transactional
from sqla_uow._errors import is_retryable_error
from sqla_uow.exceptions import IllegalTransactionStateError, TransactionRequiredError


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

    async def test_a_read_only_serializable_call_needs_no_retry(
        self, tm: TransactionManager
    ) -> None:
        @transactional(tm, isolation_level="SERIALIZABLE", read_only=True, retries=1)
        async def report() -> str:
            return str(await tm.session.scalar(text("SHOW transaction_isolation")))

        assert await report() == "serializable"
