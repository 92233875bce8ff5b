"""The MySQL / MariaDB backend."""

from __future__ import annotations

from typing import ClassVar

from ._base import Backend

__all__ = ["MySQLBackend"]


class MySQLBackend(Backend):
    """MySQL / MariaDB."""

    name: ClassVar[str] = "MySQL / MariaDB"

    # -- transactions -----------------------------------------------------------------
    # (transaction behaviour goes here)

    # -- statements -------------------------------------------------------------------
    # (statement builders go here)

    # -- errors -----------------------------------------------------------------------
    # (error classification goes here)
