"""The PostgreSQL backend."""

from __future__ import annotations

from typing import ClassVar

from ._base import Backend

__all__ = ["PostgreSQLBackend"]


class PostgreSQLBackend(Backend):
    """PostgreSQL."""

    name: ClassVar[str] = "PostgreSQL"

    # -- transactions -----------------------------------------------------------------
    # (transaction behaviour goes here)

    # -- statements -------------------------------------------------------------------
    # (statement builders go here)

    # -- errors -----------------------------------------------------------------------
    # (error classification goes here)
