"""The model and helpers shared by the transaction tests in this folder."""

from __future__ import annotations

from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import TransactionManager


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    balance: Mapped[int] = mapped_column(default=0)


async def committed_names(engine: AsyncEngine) -> list[str]:
    """The names of the committed accounts, in insertion order, read on a fresh connection."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(Account.name).order_by(Account.id))
        return list(rows.scalars())


async def add(tm: TransactionManager, name: str) -> None:
    """Add and flush an account in the current scope of *tm*."""
    tm.session.add(Account(name=name))
    await tm.session.flush()
