"""`VersionedMixin`: optimistic locking on SQLAlchemy's ``version_id_col``.

What "stale" means, for every write that knows a version:

- the ORM's own check: the UPDATE or DELETE of a loaded object matches its primary key
  *and* the version it was loaded with; no row matched, so another transaction changed
  or deleted it (``StaleDataError``, translated by `database_errors`);
- ``update(pk, version=N, ...)``, ``delete(pk, version=N)``,
  ``hard_delete(pk, version=N)``, ``update(detached_instance, ...)`` and
  ``delete(detached_instance)``: the version given (or carried by the instance) is
  not the row's current one (`check_version`, before any write; an explicit
  ``version=`` wins over the one a detached instance carries);
- ``update_many`` rows that carry a version: the rows are read ``FOR UPDATE`` and any
  whose version differs fails the whole call before anything is written.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from ._errors import stale_error
from ._filters import check_write_values
from ._model import model_meta
from .exceptions import InvalidFieldError

__all__ = ["VersionedMixin", "check_version", "expected_version"]


class VersionedMixin:
    """A ``version`` counter that makes concurrent writes of a row fail instead of
    overwriting each other (optimistic locking).

    The column is the mapper's ``version_id_col``: it starts at 1 and every UPDATE
    increments it, matching the version it read (``WHERE id = ? AND version = ?``). A
    write that finds the row at another version raises `ConflictError` with
    ``kind="stale"`` (answered with 409 by `sqla_uow.ext.fastapi`):

    - `AsyncRepository.update` / ``delete`` of an object another transaction changed
      since it was loaded;
    - ``update(pk, version=N, ...)``: *N* is the version the client read; the
      ``version`` field is the expected version, not a value to write;
    - ``delete(pk, version=N)`` / ``hard_delete(pk, version=N)``: the row is deleted
      (or soft-deleted) only at version *N*, else nothing changes;
    - ``update(instance, ...)`` / ``delete(instance)`` with a detached instance whose
      version is not the row's;
    - ``update_many`` rows that carry ``version``: any stale row fails the call before
      anything is written, naming the stale keys. Every row updated by ``update_many``
      or the update half of ``upsert_many`` gets ``version + 1``.

    A model that declares its own ``__mapper_args__`` sets
    ``"version_id_col": __table__.c.version`` there instead of using this mixin.

    Example:
        ```python
        class Order(VersionedMixin, Base):
            __tablename__ = "orders"
            id: Mapped[int] = mapped_column(primary_key=True)
            status: Mapped[str] = mapped_column(String(20))

        order = await orders.create(status="new")  # version 1
        await orders.update(order.id, version=1, status="paid")  # version 2
        await orders.update(order.id, version=1, status="sent")  # ConflictError, stale
        await orders.delete(order.id, version=1)  # ConflictError, stale
        await orders.delete(order.id, version=2)  # True: deleted
        ```
    """

    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        table: Any = getattr(cls, "__table__")  # noqa: B009 - set by declarative
        return {"version_id_col": table.c.version}


def check_version(obj: Any, key: str, expected: Any, ident: tuple[Any, ...]) -> None:
    """Raise the stale `ConflictError` when *obj*'s version *key* is not *expected*."""
    if getattr(obj, key) != expected:
        raise stale_error(obj.__class__, [ident])


def expected_version(
    model: type[Any], version: Any, *, method: str, dialect: Dialect | None
) -> tuple[str, Any] | None:
    """(version key, *version* checked as its value) for a write at a version; None without.

    *method* names the call in the message.

    Raises:
        InvalidFieldError: *model* has no version column, or *version* is a value the
            column does not take; nothing was sent.
    """
    if version is None:
        return None
    key = model_meta(model).version_key
    if key is None:
        raise InvalidFieldError(
            f"{method}(version=...) needs a versioned model; {model.__name__} has no "
            "version column (VersionedMixin or version_id_col)",
            model=model,
            field="version",
        )
    return key, check_write_values(model, {key: version}, dialect=dialect)[key]
