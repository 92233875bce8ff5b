"""Helpers shared by the transaction tests in this folder, on `models.accounts`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.accounts import Account
from sqla_uow import TransactionManager


async def committed_names(engine: AsyncEngine) -> list[str]:
    """The names of the committed accounts, in insertion order, read on a fresh connection."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(Account.name).order_by(Account.id))
        return list(rows.scalars())


async def add(tm: TransactionManager, name: str) -> None:
    """Add and flush an account in the current scope of *tm*."""
    tm.session.add(Account(name=name))
    await tm.session.flush()
