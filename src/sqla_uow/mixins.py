"""Declarative mixins for models the repositories treat specially.

`SoftDeleteMixin` gives a model a ``deleted_at`` column: the repository's deletes set it,
and every read and write skips the rows where it is set. `TimestampMixin`, `AuditMixin`
and `VersionedMixin` add columns the repository (and the in-memory fakes) maintain on
every write: timestamps, audit fields, and a version for optimistic locking.

Example:
    ```python
    from sqla_uow.mixins import AuditMixin, TimestampMixin, VersionedMixin


    class Order(TimestampMixin, AuditMixin, VersionedMixin, Base):
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(primary_key=True)
        status: Mapped[str] = mapped_column(String(20))
    ```
"""

from __future__ import annotations

from ._soft_delete import SoftDeleteMixin
from ._timestamps import AuditMixin, TimestampMixin, UtcDateTime, acting_as, current_actor
from ._versioning import VersionedMixin

__all__ = [
    "AuditMixin",
    "SoftDeleteMixin",
    "TimestampMixin",
    "UtcDateTime",
    "VersionedMixin",
    "acting_as",
    "current_actor",
]
