"""`scoped`, `including_deleted`, `restore` and `hard_delete` of `InMemoryRepository`."""

from __future__ import annotations

import copy
import sys
from typing import TYPE_CHECKING, Any

from sqla_uow._errors import stale_error
from sqla_uow._scoping import ScopeLayer, compile_scope
from sqla_uow._soft_delete import check_restorable
from sqla_uow._typing import ModelT
from sqla_uow._versioning import expected_version

from ._store import FakeStore

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Self
    else:
        from typing_extensions import Self

__all__ = ["FakeScopeMixin"]


class FakeScopeMixin(FakeStore[ModelT]):
    """The scope and soft-delete methods of `InMemoryRepository`, as the real repository's."""

    def scoped(self, *where: Any, **criteria: Any) -> Self:
        """A view over the same rows confined to the criteria, as `AsyncRepository.scoped`.

        Raises:
            InvalidFieldError: An unknown field or lookup, a value its column's type does
                not take, or an equality that contradicts an enclosing scope.

        Example:
            ```python
            shop_orders = orders.scoped(shop_id=7)
            ```
        """
        layers = (*self._scope_layers, ScopeLayer(tuple(where), dict(criteria)))
        compile_scope(self.model, layers, dialect=None, include_deleted=True)
        view = copy.copy(self)
        view._scope_layers = layers
        return view

    def including_deleted(self) -> Self:
        """The view that also sees soft-deleted rows, as `AsyncRepository.including_deleted`.

        Example:
            ```python
            everyone = await users.including_deleted().list()
            ```
        """
        view = copy.copy(self)
        view._include_deleted = True
        return view

    async def restore(self, pk_or_instance: Any) -> bool:
        """Clear ``deleted_at`` of a soft-deleted row; whether one was restored.

        Raises:
            InvalidFieldError: The model has no `SoftDeleteMixin`.

        Example:
            ```python
            assert await users.restore(ann.id)
            ```
        """
        check_restorable(self.model)
        view = self.including_deleted()
        obj = view._visible(view._key_of(pk_or_instance), view._fake_scope())
        if obj is None or obj.__dict__.get("deleted_at") is None:
            return False
        self._update([(obj, {"deleted_at": None})])
        return True

    async def hard_delete(self, pk_or_instance: Any, *, version: Any = None) -> bool:
        """Remove a row for good, soft-deleted or not; whether one was removed.

        A *version* is checked as `delete` checks it.

        Raises:
            InvalidFieldError: A *version* for a model without a version column.
            ConflictError: ``kind="stale"``: the stored version is not the one expected.

        Example:
            ```python
            assert await users.hard_delete(ann.id)
            ```
        """
        view = self.including_deleted()
        identity = view._delete_target(pk_or_instance, version, method="hard_delete")
        if identity is None:
            return False
        del self._rows[identity]
        return True

    def _delete_target(
        self, pk_or_instance: Any, version: Any, *, method: str
    ) -> tuple[Any, ...] | None:
        """The identity of the row a delete finds in the view; ``None`` when none.

        Checks the version expected: *version*, else that of an instance passed that
        is not the stored one (as the real repository checks a detached instance's).
        """
        expected = expected_version(self.model, version, method=method, dialect=None)
        is_instance = self._is_own_instance(pk_or_instance)
        identity = self._key_of(pk_or_instance)
        if is_instance and any(value is None for value in identity):
            return None
        obj = self._visible(identity, self._fake_scope())
        if obj is None:
            return None
        vkey = self._info.version_key
        if expected is None and is_instance and obj is not pk_or_instance and vkey:
            carried = pk_or_instance.__dict__.get(vkey)
            expected = (vkey, carried) if carried is not None else None
        if expected is not None and obj.__dict__.get(expected[0]) != expected[1]:
            raise stale_error(self.model, [identity])
        return identity
