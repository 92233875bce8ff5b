"""Typed async repositories, a unit of work and transaction management for SQLAlchemy 2.

Example:
    ```python
    from sqla_uow import AsyncRepository, SQLAlchemyUnitOfWork, TransactionManager

    class UserRepository(AsyncRepository[User]):
        pass

    class ShopUnitOfWork(SQLAlchemyUnitOfWork):
        users: UserRepository

    async with TransactionManager("sqlite+aiosqlite:///shop.db") as tm:
        async with ShopUnitOfWork(tm) as uow:
            await uow.users.create(email="ann@example.com", name="Ann")
    ```
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._current import current_manager, set_default_manager, use_default_manager
from ._decorators import transactional
from ._locks import ForUpdate
from ._pagination import CursorPage, Page
from ._pgbouncer import pgbouncer_options
from ._protocol import Repository
from ._repository import AsyncRepository
from ._transactions import Propagation, TransactionManager, TransactionScope
from ._uow import AbstractUnitOfWork, SQLAlchemyUnitOfWork
from .exceptions import (
    ConflictError,
    IllegalTransactionStateError,
    InvalidCursorError,
    InvalidFieldError,
    LockNotAvailableError,
    MultipleResultsError,
    NotFoundError,
    PoolExhaustedError,
    RollbackOnlyError,
    SqlaUowError,
    TransactionError,
    TransactionRequiredError,
    TransactionTimeoutError,
    UnsupportedDialectError,
)

try:
    __version__ = version("sqla-uow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AbstractUnitOfWork",
    "AsyncRepository",
    "ConflictError",
    "CursorPage",
    "ForUpdate",
    "IllegalTransactionStateError",
    "InvalidCursorError",
    "InvalidFieldError",
    "LockNotAvailableError",
    "MultipleResultsError",
    "NotFoundError",
    "Page",
    "PoolExhaustedError",
    "Propagation",
    "Repository",
    "RollbackOnlyError",
    "SQLAlchemyUnitOfWork",
    "SqlaUowError",
    "TransactionError",
    "TransactionManager",
    "TransactionRequiredError",
    "TransactionScope",
    "TransactionTimeoutError",
    "UnsupportedDialectError",
    "__version__",
    "current_manager",
    "pgbouncer_options",
    "set_default_manager",
    "transactional",
    "use_default_manager",
]
