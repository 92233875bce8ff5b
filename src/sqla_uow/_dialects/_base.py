"""`Backend`: what sqla_uow asks of a database, with the behaviour of a generic SQL one."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy.engine import Dialect

__all__ = ["Backend"]


class Backend:
    """What differs between databases and drivers, for one dialect.

    The defaults describe a generic SQL database; each backend module overrides what
    its database or driver does differently. One instance per dialect object
    (`backend_for`).
    """

    name: ClassVar[str] = "generic"
    """The backend's name in messages."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.driver: str = dialect.driver
        """The DBAPI driver's name as SQLAlchemy spells it (``asyncpg``, ``psycopg``, ...)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.dialect.name}+{self.driver}>"

    # -- transactions: engine hooks, begin, read-only, locking -----------------------
    # (transaction behaviour goes here)

    # -- statements: bulk writes, keyset, NULL ordering, limits ----------------------
    # (statement builders go here)

    # -- errors: code tables and classification ---------------------------------------
    # (error classification goes here)
