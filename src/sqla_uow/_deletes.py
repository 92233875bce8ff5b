"""`DeleteMixin`: the deletes of `AsyncRepository` — delete, hard_delete, restore."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import delete, inspect
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.state import InstanceState

from ._compat import deletes_observed, session_is_clean
from ._errors import database_errors
from ._filters import is_own_instance
from ._reads import ReadMixin
from ._soft_delete import check_restorable, deleted_now, is_soft_delete
from ._typing import ModelT
from ._versioning import check_version, expected_version

__all__ = ["DeleteMixin"]


class DeleteMixin(ReadMixin[ModelT]):
    """The deletes of a repository of ``ModelT``; mixed into `AsyncRepository`.

    Needs ``model``, ``session``, ``_meta`` and ``_mapper``, which `AsyncRepository`
    sets.
    """

    _mapper: Mapper[Any]

    async def _flush(self) -> None:
        with database_errors(self.model):
            await self.session.flush()

    def _expected_version_of(self, version: Any, method: str) -> tuple[str, Any] | None:
        """`expected_version` of *version*; the dialect is asked only when one is given."""
        if version is None:
            return None
        return expected_version(self.model, version, method=method, dialect=self._dialect())

    def _check_own_instance(self, obj: Any) -> bool:
        """Whether *obj* is an instance of the model; TypeError for another mapped class."""
        return is_own_instance(self.model, obj, owner=type(self).__name__)

    async def delete(self, pk_or_instance: Any, *, version: Any = None) -> bool:
        """Delete an object (by primary key or instance) and flush.

        ORM cascades configured on relationships apply. Returns whether a row was
        deleted: ``False`` for a primary key that matches nothing (or a row outside the
        repository's scope), or an instance that was never stored (a pending one is
        removed from the session). For a `SoftDeleteMixin` model it sets ``deleted_at``
        instead (``False`` for a row already soft-deleted); see `hard_delete`.

        Args:
            pk_or_instance: The primary key, or an instance.
            version: On a versioned model (`sqla_uow.mixins.VersionedMixin`), the
                version the caller read (an HTTP ``If-Match``): the row is loaded and
                deleted (or soft-deleted) only when it is at that version. It wins over
                the version a detached instance carries. A missing key (or one outside
                the scope) still returns ``False``.

        Raises:
            InvalidFieldError: A *version* for a model without a version column, or a
                value that column does not take (before any SQL).
            ConflictError: The DELETE broke a foreign-key constraint; ``kind="stale"``:
                the row is at another version than *version*, or a versioned row
                changed since it was loaded (or since the detached instance given
                was). The row is left as it was.

        Example:
            ```python
            assert await users.delete(ann.id)
            assert not await users.delete(ann.id)
            await orders.delete(order.id, version=1)  # ConflictError if not at 1
            ```
        """
        expected = self._expected_version_of(version, "delete")
        if expected is None and not self._scoping and not self._check_own_instance(pk_or_instance):
            deleted = await self._delete_by_key(pk_or_instance)
            if deleted is not None:
                return deleted
        obj = await self._stored(pk_or_instance, expected)
        if obj is None:
            return False
        if is_soft_delete(self.model):
            if getattr(obj, "deleted_at", None) is not None:
                return False
            obj.deleted_at = deleted_now()  # type: ignore[attr-defined]
        else:
            await self.session.delete(obj)
        await self._flush()
        return True

    async def _delete_by_key(self, pk: Any) -> bool | None:
        """Delete the row of *pk* with one ``DELETE`` where that is all the ORM would do.

        That is for a plain model (`ModelMeta.delete_by_key`) whose row is not loaded
        in the session and whose deletes no event listener watches; it saves the
        SELECT that loads the object first. ``None`` where the ORM's path must run.
        """
        meta = self._meta
        sync_session = self.session.sync_session
        if not meta.delete_by_key or deletes_observed(meta.mapper, sync_session):
            return None
        ident = self._identity(pk)
        if meta.mapper.identity_key_from_primary_key(ident) in sync_session.identity_map:
            return None
        if not session_is_clean(sync_session):
            await self._flush()  # as the ORM's delete flushes the work before it
        table = meta.table
        assert table is not None
        statement = delete(table).where(
            *(column == value for column, value in zip(meta.pk_columns, ident, strict=True))
        )
        with database_errors(self.model):
            result = cast("CursorResult[Any]", await self.session.execute(statement))
        return bool(result.rowcount)

    async def hard_delete(self, pk_or_instance: Any, *, version: Any = None) -> bool:
        """Delete an object for good, also a soft-deleted one; like `delete` otherwise.

        For a `SoftDeleteMixin` model it finds the row whether or not it is
        soft-deleted (within the repository's other scope) and deletes it; for other
        models it is `delete`. A *version* is checked as `delete` checks it (a soft
        delete counts as a write: it increments the version).

        Raises:
            InvalidFieldError: A *version* for a model without a version column.
            ConflictError: The DELETE broke a foreign-key constraint; ``kind="stale"``:
                the row is at another version than *version* (or than a detached
                instance's).

        Example:
            ```python
            assert await users.hard_delete(ann.id)  # the row is gone
            await orders.hard_delete(order.id, version=3)  # only at version 3
            ```
        """
        expected = self._expected_version_of(version, "hard_delete")
        view = self.including_deleted() if is_soft_delete(self.model) else self
        obj = await view._stored(pk_or_instance, expected)
        if obj is None:
            return False
        await self.session.delete(obj)
        await self._flush()
        return True

    async def restore(self, pk_or_instance: Any) -> bool:
        """Undo the soft delete of an object: clear its ``deleted_at`` and flush.

        Returns whether a soft-deleted row (within the repository's other scope) was
        restored: ``False`` for a key that matches nothing or a row that is not deleted.

        Raises:
            InvalidFieldError: The model has no `SoftDeleteMixin`.

        Example:
            ```python
            await users.delete(ann.id)
            assert await users.restore(ann.id)
            assert await users.get(ann.id) is ann
            ```
        """
        check_restorable(self.model)
        obj = await self.including_deleted()._stored(pk_or_instance)
        if obj is None or getattr(obj, "deleted_at", None) is None:
            return False
        obj.deleted_at = None  # type: ignore[attr-defined]
        await self._flush()
        return True

    async def _stored(
        self, pk_or_instance: Any, expected: tuple[str, Any] | None = None
    ) -> ModelT | None:
        """The persistent object of a key or instance, in the scope; ``None`` when none.

        A pending instance is removed from the session. *expected*: (version key, the
        version the row must be at), checked instead of a detached instance's version.

        Raises:
            ConflictError: ``kind="stale"``: the row is at another version.
        """
        if not self._check_own_instance(pk_or_instance):
            found = await self.get(pk_or_instance)
            if found is not None and expected is not None:
                check_version(found, *expected, self._identity(pk_or_instance))
            return found
        state: InstanceState[Any] = inspect(pk_or_instance)
        if state.pending:
            self.session.expunge(pk_or_instance)
            return None
        ident = (
            state.identity
            if state.identity is not None
            else self._mapper.primary_key_from_instance(pk_or_instance)
        )
        if pk_or_instance in self.session and not self._scoping:
            obj: ModelT = pk_or_instance
        else:
            if any(value is None for value in ident):
                return None
            stored = await self.get(tuple(ident))
            if stored is None:
                return None
            obj = stored
            key = self._meta.version_key
            carried = state.dict.get(key) if key is not None else None
            if expected is None and key is not None and carried is not None:
                # A detached instance carries the version it was read at.
                expected = (key, carried)
        if expected is not None:
            check_version(obj, *expected, tuple(ident))
        return obj
