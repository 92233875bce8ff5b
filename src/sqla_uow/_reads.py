"""`ReadMixin`: the reads of `AsyncRepository` — get, find, list, count, exists."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    ColumnElement,
    Select,
    func,
    inspect,
    literal,
    select,
    tuple_,
)
from sqlalchemy.engine import ScalarResult
from sqlalchemy.orm import QueryableAttribute

from ._errors import database_errors
from ._filters import (
    check_window,
    identity_of,
    not_found_error,
    one_or_none,
)
from ._locks import ForUpdate, lock_arguments, with_lock
from ._model import ModelMeta
from ._ordering import compile_order_by, order_items, parse_order_item
from ._scoping import ActiveScope, ScopeBase
from ._typing import ModelT
from ._where import Where, compile_where

if TYPE_CHECKING:
    from sqlalchemy.orm.interfaces import ORMOption


__all__ = ["OrderBy", "OrderByItem", "ReadMixin"]

OrderByItem = str | ColumnElement[Any] | QueryableAttribute[Any]
"""One ordering: ``"name"``, ``"-created_at"``, ``User.name`` or ``User.name.desc()``."""
OrderBy = OrderByItem | Sequence[OrderByItem] | None
"""What ``order_by=`` accepts: one ordering, a sequence of them, or ``None``."""

_GET_MANY_CHUNK = 500


class ReadMixin(ScopeBase[ModelT]):
    """The reads of a repository of ``ModelT``; mixed into `AsyncRepository`.

    Needs ``model``, ``session``, ``_meta`` (the model's `ModelMeta`) and
    ``cursor_secret``, which `AsyncRepository` sets.
    """

    cursor_secret: ClassVar[bytes | None]
    _meta: ModelMeta
    _pk_names: tuple[str, ...]

    # ----------------------------------------------------------------------------- keys

    def _identity(self, pk: Any) -> tuple[Any, ...]:
        """Normalise a primary key (scalar, tuple or mapping) to a checked identity tuple."""
        return identity_of(self.model, pk, dialect=self._dialect())

    def _pk_attrs(self) -> builtins.list[ColumnElement[Any]]:
        return [getattr(self.model, name).expression for name in self._pk_names]

    # ----------------------------------------------------------------------- statements

    def _select(
        self,
        where: Sequence[Where],
        filters: Mapping[str, Any],
        *,
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        options: Sequence[ORMOption] = (),
        for_update: bool | ForUpdate = False,
    ) -> Select[Any]:
        check_window(self.model, limit=limit, offset=offset)
        criteria = compile_where(self.model, where, filters, dialect=self._dialect())
        ordering = compile_order_by(self.model, order_by)
        stmt = select(self.model).where(*criteria)
        if ordering:
            stmt = stmt.order_by(*ordering)
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        if options:
            stmt = stmt.options(*options)
        if for_update is not False:
            stmt = with_lock(stmt, for_update, self.model, self._backend())
        scope = self._active_scope() if self._scoping else None  # hot path
        return stmt if scope is None else scope.apply(stmt)

    def _criteria(
        self, where: Sequence[Where], filters: Mapping[str, Any]
    ) -> builtins.list[ColumnElement[bool]]:
        """The WHERE criteria of *where* and *filters*, with the scope's."""
        criteria = compile_where(self.model, where, filters, dialect=self._dialect())
        scope = self._active_scope()
        if scope is not None:
            criteria.extend(scope.criteria)
        return criteria

    def _stable_order(self, order_by: OrderBy) -> builtins.list[Any]:
        """*order_by* followed by the primary-key columns it does not already name."""
        items = order_items(self.model, order_by)
        named = {parse_order_item(self.model, item)[2] for item in items}
        return [*items, *(name for name in self._pk_names if name not in named)]

    def _unique(self, result: ScalarResult[Any], options: Sequence[ORMOption]) -> ScalarResult[Any]:
        """*result*, made unique when joined eager loading of a collection may repeat rows.

        That is when loader options are given or the mapper eagerly joins a collection;
        uniquing costs a hash per row, so plain queries skip it.
        """
        if options or self._meta.joins_collections:
            return result.unique()
        return result

    # ---------------------------------------------------------------------------- reads

    async def get(
        self,
        pk: Any,
        *,
        options: Sequence[ORMOption] = (),
        for_update: bool | ForUpdate = False,
    ) -> ModelT | None:
        """The object with primary key *pk*, or ``None``.

        Answers from the identity map without SQL when the object is loaded, unless
        ``options`` are given or ``for_update=True``: then it always queries (``SELECT
        ... FOR UPDATE`` for the latter) and refreshes the object from the row.

        Args:
            pk: The primary key: a value, or a tuple (or mapping by attribute name) for a
                composite key.
            options: Loader options, such as ``selectinload(User.orders)``.
            for_update: Lock the row until the transaction ends: ``True``, or a
                `ForUpdate` with options (``nowait``, ``skip_locked``, ...). SQLite
                has no row locks and needs none (see `ForUpdate`).

        Raises:
            InvalidFieldError: *pk* does not fit the primary key: its shape, or a value
                its column's type does not take (``True``, an integer beyond the
                column's width, text that is not a number for an integer key); or
                *for_update* is not a bool or `ForUpdate`.
            UnsupportedDialectError: A `ForUpdate` option the database does not have.
            LockNotAvailableError: ``ForUpdate(nowait=True)`` and the row is locked.

        Example:
            ```python
            user = await users.get(1)
            line = await lines.get((order_id, 3))
            ```
        """
        ident = self._identity(pk)
        scope = self._active_scope() if self._scoping else None  # hot path
        if scope is not None and scope.criteria:
            return await self._get_scoped(scope, ident, options, for_update=for_update)
        locks = for_update is not False
        lock = lock_arguments(for_update, self.model, self._backend()) if locks else None
        with database_errors(self.model):
            return await self.session.get(
                self.model,
                ident,
                options=options if scope is None else (*scope.options, *options),
                with_for_update=None if lock is None else (lock or True),
                populate_existing=bool(options) or locks,
            )

    async def _get_scoped(
        self,
        scope: ActiveScope,
        ident: tuple[Any, ...],
        options: Sequence[ORMOption],
        *,
        for_update: bool | ForUpdate,
    ) -> ModelT | None:
        """`get` confined to *scope*: from the identity map when its loaded state decides."""
        if not options and not for_update:
            key = self._meta.mapper.identity_key_from_primary_key(ident)
            loaded = self.session.sync_session.identity_map.get(key)
            if loaded is not None:
                holds = scope.holds(loaded)
                if holds is not None:
                    return loaded if holds else None
        cols = self._pk_attrs()
        stmt = self._select(
            [col == value for col, value in zip(cols, ident, strict=True)],
            {},
            options=options,
            for_update=for_update,
        )
        if options or for_update:
            stmt = stmt.execution_options(populate_existing=True)
        with database_errors(self.model):
            result = await self.session.scalars(stmt)
        found: ModelT | None = self._unique(result, options).one_or_none()
        return found

    async def get_one(
        self,
        pk: Any,
        *,
        options: Sequence[ORMOption] = (),
        for_update: bool | ForUpdate = False,
    ) -> ModelT:
        """The object with primary key *pk*; like `get` but raises when there is none.

        Raises:
            NotFoundError: No row has this primary key (``exc.ident`` is *pk*).
            InvalidFieldError: *pk* does not fit the primary key: its shape, or a value
                its column's type does not take (``True``, an integer beyond the
                column's width, text that is not a number for an integer key); or
                *for_update* is not a bool or `ForUpdate`.
            UnsupportedDialectError: A `ForUpdate` option the database does not have.
            LockNotAvailableError: ``ForUpdate(nowait=True)`` and the row is locked.

        Example:
            ```python
            user = await users.get_one(1)  # a User, never None
            ```
        """
        obj = await self.get(pk, options=options, for_update=for_update)
        if obj is None:
            raise not_found_error(self.model, pk)
        return obj

    async def get_many(
        self,
        pks: Iterable[Any],
        *,
        options: Sequence[ORMOption] = (),
    ) -> builtins.list[ModelT]:
        """The objects with the given primary keys, in the order of *pks*.

        Missing keys are skipped and a repeated key yields its object once (also when
        given in two forms the database takes as equal, such as ``1`` and ``"1"``).
        Always queries, with one ``SELECT ... WHERE pk IN (...)`` per 500 keys.

        Example:
            ```python
            users_by_order = await users.get_many([3, 1, 2])  # [u3, u1, u2]
            ```
        """
        idents: dict[tuple[Any, ...], None] = {}
        for pk in pks:
            idents[self._identity(pk)] = None
        wanted = builtins.list(idents)
        if not wanted:
            return []
        cols = self._pk_attrs()
        scope = self._active_scope()
        found: dict[tuple[Any, ...], ModelT] = {}
        for start in range(0, len(wanted), _GET_MANY_CHUNK):
            chunk = wanted[start : start + _GET_MANY_CHUNK]
            if len(cols) == 1:
                criterion = cols[0].in_([ident[0] for ident in chunk])
            else:
                criterion = tuple_(*cols).in_(chunk)
            stmt = select(self.model).where(criterion)
            if scope is not None:
                stmt = scope.apply(stmt)
            if options:
                stmt = stmt.options(*options)
            for obj in (await self.session.scalars(stmt)).unique():
                identity = inspect(obj).identity
                if identity is not None:
                    found[tuple(identity)] = obj
        result: dict[int, ModelT] = {}
        for ident in wanted:
            hit = found.get(ident)
            if hit is not None:
                result.setdefault(id(hit), hit)
        return builtins.list(result.values())

    async def find_one(
        self,
        *where: Where,
        options: Sequence[ORMOption] = (),
        for_update: bool | ForUpdate = False,
        **filters: Any,
    ) -> ModelT | None:
        """The one object matching the criteria, or ``None`` when none does.

        Args:
            *where: SQLAlchemy boolean expressions.
            options: Loader options.
            for_update: Lock the matching row until the transaction ends (``SELECT ...
                FOR UPDATE``), as for a row found by a unique key: ``True`` or a
                `ForUpdate` (ignored by SQLite, see `ForUpdate`).
            **filters: ``field=value`` and lookups.

        Raises:
            MultipleResultsError: More than one row matches.
            InvalidFieldError: An unknown field or lookup, or a value its column's type
                does not take.
            LockNotAvailableError: ``ForUpdate(nowait=True)`` and the row is locked.

        Example:
            ```python
            user = await users.find_one(email="ann@example.com")
            locked = await users.find_one(email="ann@example.com", for_update=True)
            ```
        """
        stmt = self._select(where, filters, limit=2, options=options, for_update=for_update)
        with database_errors(self.model):
            found = self._unique(await self.session.scalars(stmt), options).all()
        return one_or_none(self.model, found)

    async def list(
        self,
        *where: Where,
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        options: Sequence[ORMOption] = (),
        for_update: bool | ForUpdate = False,
        **filters: Any,
    ) -> builtins.list[ModelT]:
        """The objects matching the criteria.

        Args:
            *where: SQLAlchemy boolean expressions, such as ``User.id > 10``.
            order_by: ``"name"``, ``"-created_at"``, column expressions, or a sequence.
                Without it the database's order applies (unspecified). NULL sorts
                as the greatest value on every database: last ascending, first
                descending.
            limit: At most this many rows.
            offset: Skip this many rows first.
            options: Loader options.
            for_update: Lock the selected rows: ``True`` or a `ForUpdate` (ignored
                by SQLite, see `ForUpdate`).
            **filters: ``field=value`` and lookups such as ``name__ilike="a%"``.

        Raises:
            InvalidFieldError: An unknown field, lookup or order key, a value its
                column's type does not take, or a negative limit or offset.
            LockNotAvailableError: ``ForUpdate(nowait=True)`` and a row is locked.

        Example:
            ```python
            recent = await users.list(User.id > 100, order_by="-id", limit=10)
            anns = await users.list(name="Ann", email__is_null=False)
            ```
        """
        stmt = self._select(
            where,
            filters,
            order_by=order_by,
            limit=limit,
            offset=offset,
            options=options,
            for_update=for_update,
        )
        with database_errors(self.model):
            return builtins.list(self._unique(await self.session.scalars(stmt), options).all())

    async def count(self, *where: Where, **filters: Any) -> int:
        """How many rows match the criteria.

        Example:
            ```python
            n = await users.count(name__like="A%")
            ```
        """
        criteria = self._criteria(where, filters)
        stmt = select(func.count()).select_from(self.model).where(*criteria)
        return int((await self.session.execute(stmt)).scalar_one())

    async def exists(self, *where: Where, **filters: Any) -> bool:
        """Whether at least one row matches the criteria.

        Example:
            ```python
            taken = await users.exists(email="ann@example.com")
            ```
        """
        criteria = self._criteria(where, filters)
        stmt = select(literal(1)).select_from(self.model).where(*criteria).limit(1)
        return (await self.session.execute(stmt)).first() is not None
