"""`SoftDeleteMixin`: models whose rows a repository marks deleted instead of deleting.

The repository reads which models soft-delete from here: `is_soft_delete` for the model
itself, `registry_soft_deletes` for the loader criterion that keeps soft-deleted rows out
of relationship loads, added only when the model's registry maps such a class.
"""

from __future__ import annotations

import datetime as dt
import weakref
from typing import Any

from sqlalchemy import ColumnElement, DateTime, inspect
from sqlalchemy.orm import Mapped, Mapper, mapped_column, with_loader_criteria
from sqlalchemy.orm.interfaces import ORMOption

from ._model import model_meta
from .exceptions import InvalidFieldError

__all__ = [
    "SoftDeleteMixin",
    "check_restorable",
    "deleted_now",
    "is_soft_delete",
    "not_deleted_loader",
    "registry_soft_deletes",
]


class SoftDeleteMixin:
    """Declarative mixin: a ``deleted_at`` column, and deletes that only set it.

    For a model with this mixin, the repository's ``delete``, ``delete_many`` and
    ``delete_where`` set ``deleted_at`` (timezone-aware, UTC) instead of deleting the
    row; every read skips rows whose ``deleted_at`` is set, relationship loads included;
    every write treats them as missing keys. ``repo.including_deleted()`` is the view
    that sees them, ``repo.restore(pk)`` clears ``deleted_at`` and
    ``repo.hard_delete(pk)`` deletes the row for good.

    Attributes:
        deleted_at: When the row was soft-deleted; ``None`` while it is live. Indexed.

    Example:
        ```python
        from sqla_uow.mixins import SoftDeleteMixin

        class Note(SoftDeleteMixin, Base):
            __tablename__ = "notes"

            id: Mapped[int] = mapped_column(primary_key=True)
            text: Mapped[str] = mapped_column(String(200))
        ```
    """

    deleted_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True, default=None
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)  # declarative bases map the class here
        mapper: object = inspect(cls, raiseerr=False)
        if isinstance(mapper, Mapper):
            _SOFT_REGISTRIES.add(mapper.registry)


def is_soft_delete(model: type[Any]) -> bool:
    """Whether *model* has `SoftDeleteMixin`."""
    return issubclass(model, SoftDeleteMixin)


_SOFT_REGISTRIES: weakref.WeakSet[Any] = weakref.WeakSet()
"""The registries that map a `SoftDeleteMixin` class (recorded when the class is mapped
by a declarative base, or when a repository of such a class is made)."""


def check_restorable(model: type[Any]) -> None:
    """Refuse `restore` for a model without `SoftDeleteMixin` (`InvalidFieldError`)."""
    if not is_soft_delete(model):
        raise InvalidFieldError(
            f"restore() needs a soft-deleted model; {model.__name__} has no "
            "SoftDeleteMixin (deleted_at)",
            model=model,
            field="deleted_at",
        )


def registry_soft_deletes(model: type[Any]) -> bool:
    """Whether the registry mapping *model* maps a `SoftDeleteMixin` class."""
    registry = model_meta(model).mapper.registry
    if registry in _SOFT_REGISTRIES:
        return True
    if is_soft_delete(model):
        _SOFT_REGISTRIES.add(registry)
        return True
    return False


def _live(cls: Any) -> ColumnElement[bool]:
    column: ColumnElement[bool] = cls.deleted_at.is_(None)
    return column


_NOT_DELETED: ORMOption = with_loader_criteria(SoftDeleteMixin, _live, include_aliases=True)


def not_deleted_loader() -> ORMOption:
    """The loader option that keeps soft-deleted rows out of every load of the statement."""
    return _NOT_DELETED


def deleted_now() -> dt.datetime:
    """The ``deleted_at`` value of a row soft-deleted now (UTC)."""
    return dt.datetime.now(dt.timezone.utc)
