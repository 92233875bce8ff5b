"""`InMemoryRepository`: the repository API over a dictionary of model instances."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, get_args, get_origin

from sqla_uow._errors import stale_error
from sqla_uow._filters import (
    as_values,
    check_assignable,
    check_window,
    check_write_values,
    drop_unchanged_key,
    not_found_error,
    one_or_none,
)
from sqla_uow._locks import ForUpdate, lock_request
from sqla_uow._model import model_meta
from sqla_uow._pagination import check_secret
from sqla_uow._typing import ModelT
from sqla_uow.exceptions import (
    InvalidFieldError,
)

from ._fake_bulk import FakeBulkMixin
from ._fake_pages import FakePagesMixin
from ._fake_scope import FakeScopeMixin
from ._store import FakeTable

__all__ = ["InMemoryRepository"]


def _model_from_bases(cls: type[Any]) -> type[Any] | None:
    for klass in cls.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, InMemoryRepository):
                args = get_args(base)
                if args and isinstance(args[0], type):
                    return args[0]
    return None


class InMemoryRepository(FakePagesMixin[ModelT], FakeBulkMixin[ModelT], FakeScopeMixin[ModelT]):
    """A stand-in for `AsyncRepository` that keeps model instances in memory.

    To type checkers it implements the `sqla_uow.Repository` protocol (it is not an
    `AsyncRepository`): type the code that takes either with ``Repository[Model]``.

    It has the repository's async API, with the same validation (the same helpers
    check names and values) and the same errors: `InvalidFieldError` for an unknown
    field, lookup, order key or bad argument, `NotFoundError`, `MultipleResultsError`,
    and `ConflictError` for a duplicate primary key, a duplicate value of a unique
    column, constraint or index of the model's table, or a missing NOT NULL value.
    Integer autoincrement primary keys are generated (1, 2, 3, ...) and Python-side
    column defaults (``default=``, ``onupdate=``) applied. Nothing reaches a database,
    so a service test runs in microseconds.

    Keyword filters (``name="Ann"``, ``age__gte=18``, ``email__ilike="%@example.com"``)
    are evaluated in Python with SQL's rules for NULL. Positional expressions are
    evaluated when they compare one of the model's columns with a value
    (``User.age >= 18``, ``User.id.in_([1, 2])``, ``or_(...)``, ``~...``); anything else
    raises `UnsupportedExpressionError`. ``like`` is case-sensitive (as on PostgreSQL;
    SQLite's LIKE ignores ASCII case). Orderings sort NULL as the greatest value (last
    ascending, first descending), as every read of `AsyncRepository` does on every
    database; without ``order_by``, rows come in primary-key order.

    The columns of `sqla_uow.mixins` are maintained as the database maintains them:
    timestamps (from Python's clock), audit fields and versions, with the same stale
    errors. Not imitated: other server-side defaults (``server_default=``), foreign
    keys, check constraints, loader options (``options=`` is accepted and ignored,
    relationship attributes hold what your code put there) and row locks
    (``for_update=`` is checked as the real repository checks it, ``ForUpdate``
    options included, and otherwise ignored). The stored instances are the ones the
    repository returns: setting an attribute of a returned instance changes the stored
    row, as the next flush of a real session would.

    Use it directly, or as the base of a fake for your own repository class. Code
    typed with the `sqla_uow.Repository` protocol takes it as it takes the real
    repository. For code annotated with ``AsyncRepository[Model]`` type checkers see
    this class as a subclass of `AsyncRepository` too, so the fake can be passed there;
    at run time it is not one, and has no ``session``.

    Attributes:
        model: The mapped class.
        cursor_secret: Key for the checksum of `paginate_cursor` cursors, as on
            `AsyncRepository`.

    Example:
        ```python
        from sqla_uow.testing import InMemoryRepository

        users = InMemoryRepository(User)
        ann = await users.create(email="ann@example.com", name="Ann")
        assert await users.get_one(ann.id) is ann

        class FakeUserRepository(InMemoryRepository[User]):
            async def get_by_email(self, email: str) -> User | None:
                return await self.find_one(email=email)

        fake = FakeUserRepository(rows=[{"email": "bob@example.com", "name": "Bob"}])
        ```
    """

    model: type[ModelT]
    cursor_secret: ClassVar[bytes | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_secret(cls.__name__, cls.__dict__.get("cursor_secret"))
        if "model" not in cls.__dict__:
            model = _model_from_bases(cls)
            if model is not None:
                cls.model = model

    def __init__(self, model: type[ModelT] | None = None, *, rows: Iterable[Any] = ()) -> None:
        """Make an empty repository, or one holding *rows*.

        Args:
            model: The mapped class. Optional in a subclass of
                ``InMemoryRepository[Model]`` or one that sets ``model = Model``.
            rows: Initial rows: mappings, model instances, pydantic models or
                dataclasses, stored as `create` would store each.

        Raises:
            TypeError: no model was given and the class does not name one.

        Example:
            ```python
            users = InMemoryRepository(User, rows=[{"email": "ann@example.com", "name": "Ann"}])
            ```
        """
        if model is not None:
            self.model = model
        found = getattr(self, "model", None)
        if not isinstance(found, type):
            name = type(self).__name__
            raise TypeError(
                f"{name} needs a model: InMemoryRepository(User), subclass "
                f"InMemoryRepository[User], or set `model = User` on {name}"
            )
        self._info = model_meta(found)
        self._table = FakeTable()  # rows, next key, FakeUnitOfWork: shared with scoped views
        initial = [self._instance(row, {}) for row in rows]
        if initial:
            self._insert(initial)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} model={self.model.__name__} rows={len(self._rows)}>"

    # -------------------------------------------------------------------------- reads

    @property
    def rows(self) -> builtins.list[ModelT]:
        """Every stored instance in primary-key order, for assertions in tests.

        Example:
            ```python
            assert [user.email for user in users.rows] == ["ann@example.com"]
            ```
        """
        return self._ordered()

    async def get(
        self, pk: Any, *, options: Sequence[Any] = (), for_update: bool | ForUpdate = False
    ) -> ModelT | None:
        """The instance with primary key *pk*, or ``None``.

        Raises:
            InvalidFieldError: *pk* does not fit the primary key.

        Example:
            ```python
            user = await users.get(1)
            ```
        """
        ident = self._identity(pk)  # checked before the lock, as the repository does
        lock_request(for_update, self.model)
        return self._visible(ident, self._fake_scope())

    async def get_one(
        self, pk: Any, *, options: Sequence[Any] = (), for_update: bool | ForUpdate = False
    ) -> ModelT:
        """The instance with primary key *pk*; like `get` but raises when there is none.

        Raises:
            NotFoundError: No instance has this primary key (``exc.ident`` is *pk*).
            InvalidFieldError: *pk* does not fit the primary key.

        Example:
            ```python
            user = await users.get_one(1)
            ```
        """
        ident = self._identity(pk)
        lock_request(for_update, self.model)
        obj = self._visible(ident, self._fake_scope())
        if obj is None:
            raise not_found_error(self.model, pk)
        return obj

    async def get_many(
        self, pks: Iterable[Any], *, options: Sequence[Any] = ()
    ) -> builtins.list[ModelT]:
        """The instances with the given primary keys, in the order of *pks*.

        Missing keys are skipped and a repeated key yields its instance once.

        Example:
            ```python
            found = await users.get_many([3, 1, 2])
            ```
        """
        wanted = dict.fromkeys(self._identity(pk) for pk in pks)
        scope = self._fake_scope()
        found = [self._visible(ident, scope) for ident in wanted]
        return [obj for obj in found if obj is not None]

    async def find_one(
        self,
        *where: Any,
        options: Sequence[Any] = (),
        for_update: bool | ForUpdate = False,
        **filters: Any,
    ) -> ModelT | None:
        """The one instance matching the criteria, or ``None`` when none does.

        Raises:
            MultipleResultsError: More than one instance matches.
            InvalidFieldError: An unknown field or lookup.

        Example:
            ```python
            ann = await users.find_one(email="ann@example.com")
            ```
        """
        found = self._fake_select(where, filters)  # criteria checked before the lock
        lock_request(for_update, self.model)
        return one_or_none(self.model, found)

    async def list(
        self,
        *where: Any,
        order_by: Any = None,
        limit: int | None = None,
        offset: int | None = None,
        options: Sequence[Any] = (),
        for_update: bool | ForUpdate = False,
        **filters: Any,
    ) -> builtins.list[ModelT]:
        """The instances matching the criteria, ordered and windowed.

        Raises:
            InvalidFieldError: An unknown field, lookup or order key, or a negative
                limit or offset.
            UnsupportedExpressionError: An expression that cannot be evaluated in Python.

        Example:
            ```python
            adults = await users.list(age__gte=18, order_by="-age", limit=10)
            ```
        """
        check_window(self.model, limit=limit, offset=offset)
        found = self._fake_select(where, filters, order_by)  # checked before the lock
        lock_request(for_update, self.model)
        start = offset or 0
        return found[start : start + limit] if limit is not None else found[start:]

    async def count(self, *where: Any, **filters: Any) -> int:
        """How many instances match the criteria.

        Example:
            ```python
            assert await users.count(name="Ann") == 1
            ```
        """
        return len(self._fake_select(where, filters))

    async def exists(self, *where: Any, **filters: Any) -> bool:
        """Whether at least one instance matches the criteria.

        Example:
            ```python
            taken = await users.exists(email="ann@example.com")
            ```
        """
        return bool(self._fake_select(where, filters))

    # ------------------------------------------------------------------------- writes

    async def create(self, data: Any = None, /, **values: Any) -> ModelT:
        """Store a new instance built from *data* and *values* (or *data* itself).

        Raises:
            InvalidFieldError: A name that is not a writable mapped column.
            ConflictError: A duplicate primary key or unique value, or a missing NOT
                NULL value.

        Example:
            ```python
            ann = await users.create(email="ann@example.com", name="Ann")
            ```
        """
        obj = self._instance(data, values)
        scope = self._fake_scope()
        if scope is not None:
            given = {key: obj.__dict__[key] for key in scope.scope.fill if key in obj.__dict__}
            for key, value in scope.scope.filled(given).items():
                setattr(obj, key, value)
        self._insert([obj])
        return obj

    async def update(self, pk_or_instance: Any, data: Any = None, /, **values: Any) -> ModelT:
        """Assign fields of a stored instance (by primary key or instance).

        A pydantic model as *data* contributes only the fields explicitly set. A
        primary-key field is accepted only when it equals the current key.

        On a versioned model a ``version`` field (or the version of an instance
        passed that is not the stored one) is the version expected, as on
        `AsyncRepository.update`.

        Raises:
            NotFoundError: Nothing is stored under the primary key.
            InvalidFieldError: A name that is not a writable mapped column, or a
                primary-key change.
            ConflictError: The new values break a unique or NOT NULL rule, or
                (``kind="stale"``) the stored version is not the one expected.

        Example:
            ```python
            ann = await users.update(ann.id, name="Annie")
            ```
        """
        is_instance = self._is_own_instance(pk_or_instance)
        if self._is_own_instance(data):
            fields = as_values(data, values)
        else:
            fields = as_values(data, values, exclude_unset=True)
        check_assignable(self.model, fields)
        if is_instance:
            current = self._identity_of(pk_or_instance)
            if any(value is None for value in current):
                raise InvalidFieldError(
                    f"update() needs a stored {self.model.__name__}; this one was never "
                    "saved (use create())",
                    model=self.model,
                )
        else:
            current = self._identity(pk_or_instance)
        fields = check_write_values(self.model, fields, dialect=None)
        drop_unchanged_key(self.model, fields, current)
        scope = self._fake_scope()
        if scope is not None:
            scope.scope.keep(fields)
        obj = self._visible(current, scope)
        if obj is None:
            raise not_found_error(self.model, pk_or_instance if not is_instance else current)
        vkey = self._info.version_key
        if vkey is not None and fields.get(vkey) is None:  # the version it expects
            fields.pop(vkey, None)
            if is_instance and pk_or_instance is not obj:
                carried = pk_or_instance.__dict__.get(vkey)
                if carried is not None:
                    fields[vkey] = carried
        stored = obj.__dict__
        if all(stored.get(key) == value for key, value in fields.items() if key != vkey):
            # Nothing changes: the ORM sends no UPDATE (no onupdate, no new version).
            if vkey is not None and fields.get(vkey, stored.get(vkey)) != stored.get(vkey):
                raise stale_error(self.model, [current])
            return obj
        self._update([(obj, fields)])
        return obj

    async def delete(self, pk_or_instance: Any, *, version: Any = None) -> bool:
        """Remove an instance (by primary key or instance); whether anything was removed.

        A key outside the scope removes nothing; a `SoftDeleteMixin` instance gets its
        ``deleted_at`` set instead. A *version* (on a versioned model) is the version
        the row must be at, as on `AsyncRepository.delete`; it wins over the version of
        an instance passed that is not the stored one.

        Raises:
            InvalidFieldError: A *version* for a model without a version column.
            ConflictError: ``kind="stale"``: the stored version is not the one expected.

        Example:
            ```python
            assert await users.delete(ann.id)
            ```
        """
        identity = self._delete_target(pk_or_instance, version, method="delete")
        return identity is not None and self._fake_delete([identity]) == 1
