"""Column mixins for mapped classes: timestamps, audit fields, optimistic locking.

Add them to a model's bases; the repository (and the in-memory fakes) maintain the
columns on every write.

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

from ._timestamps import AuditMixin, TimestampMixin, UtcDateTime, acting_as, current_actor
from ._versioning import VersionedMixin

__all__ = [
    "AuditMixin",
    "TimestampMixin",
    "UtcDateTime",
    "VersionedMixin",
    "acting_as",
    "current_actor",
]
