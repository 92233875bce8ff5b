"""The SQLite backend."""

from __future__ import annotations

from typing import ClassVar

from ._base import Backend

__all__ = ["SQLiteBackend"]


class SQLiteBackend(Backend):
    """SQLite."""

    name: ClassVar[str] = "SQLite"

    # -- transactions -----------------------------------------------------------------
    # (transaction behaviour goes here)

    # -- statements -------------------------------------------------------------------
    # (statement builders go here)

    # -- errors -----------------------------------------------------------------------
    # (error classification goes here)
