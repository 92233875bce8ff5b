"""Fixtures of the transaction tests: the ``accounts`` table and a TransactionManager on it."""

from __future__ import annotations

import pytest
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine

from models.accounts import Base
from sqla_uow import TransactionManager


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
def tm(engine: AsyncEngine) -> TransactionManager:
    return TransactionManager(engine)
