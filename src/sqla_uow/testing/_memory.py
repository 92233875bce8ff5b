"""`InMemoryRepository`: the repository API over a dictionary of model instances."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, ClassVar, get_args, get_origin

from sqla_uow._filters import (
    as_values,
    check_assignable,
    check_page_size,
    check_stream_chunk_size,
    check_window,
    check_write_values,
    drop_unchanged_key,
    not_found_error,
    one_or_none,
)
from sqla_uow._model import model_meta, unique_key_error
from sqla_uow._pagination import CursorPage, KeysetRequest, Page, check_secret
from sqla_uow._rows import (
    check_all_rows,
    check_chunk_size,
    check_key_shapes,
    check_unique_rows,
    check_update_rows,
    check_upsert_options,
    check_upsert_rows,
    group_by_keys,
    refuse_unbounded_delete,
    row_values,
)
from sqla_uow._typing import ModelT
from sqla_uow.exceptions import (
    InvalidFieldError,
)

from ._expressions import sort_instances
from ._store import FakeStore

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


def _same(obj: Any) -> Any:
    return obj


def _compare(a: Any, b: Any, *, descending: bool) -> int:
    """Compare two sort values; NULL is the greatest value (as in every ordering)."""
    if a is None or b is None:
        result = (a is None) - (b is None)
    else:
        result = (a > b) - (a < b)
    return -result if descending else result


class InMemoryRepository(FakeStore[ModelT]):
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

    Not imitated: server-side defaults (``server_default=``), foreign keys, check
    constraints, loader options (``options=`` is accepted and ignored, relationship
    attributes hold what your code put there) and row locks (``for_update=`` is
    accepted and ignored). The stored instances are the ones the repository returns:
    setting an attribute of a returned instance changes the stored row, as the next
    flush of a real session would.

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
        self._unit_of_work: Any = None  # the FakeUnitOfWork whose block holds this repository
        self._rows: dict[tuple[Any, ...], ModelT] = {}
        self._next_id = 1
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
        self, pk: Any, *, options: Sequence[Any] = (), for_update: bool = False
    ) -> ModelT | None:
        """The instance with primary key *pk*, or ``None``.

        Raises:
            InvalidFieldError: *pk* does not fit the primary key.

        Example:
            ```python
            user = await users.get(1)
            ```
        """
        return self._rows.get(self._identity(pk))

    async def get_one(
        self, pk: Any, *, options: Sequence[Any] = (), for_update: bool = False
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
        obj = self._rows.get(self._identity(pk))
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
        return [self._rows[ident] for ident in wanted if ident in self._rows]

    async def find_one(
        self,
        *where: Any,
        options: Sequence[Any] = (),
        for_update: bool = False,
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
        return one_or_none(self.model, self._fake_select(where, filters))

    async def list(
        self,
        *where: Any,
        order_by: Any = None,
        limit: int | None = None,
        offset: int | None = None,
        options: Sequence[Any] = (),
        for_update: bool = False,
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
        found = self._fake_select(where, filters, order_by)
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

    async def paginate(
        self,
        *where: Any,
        limit: int,
        offset: int = 0,
        order_by: Any = None,
        options: Sequence[Any] = (),
        **filters: Any,
    ) -> Page[ModelT]:
        """One page of the matching instances and the total count (offset pagination).

        The primary key breaks ties, as in `AsyncRepository.paginate`.

        Raises:
            InvalidFieldError: ``limit`` below 1, a negative ``offset``, or an unknown
                field, lookup or order key.

        Example:
            ```python
            page = await users.paginate(limit=20, offset=40, order_by="name")
            ```
        """
        check_window(self.model, limit=limit, offset=offset)
        check_page_size(self.model, limit)
        found = self._fake_select(where, filters, order_by)
        return Page(
            items=found[offset : offset + limit], total=len(found), limit=limit, offset=offset
        )

    async def stream(
        self,
        *where: Any,
        order_by: Any = None,
        chunk_size: int = 1000,
        options: Sequence[Any] = (),
        **filters: Any,
    ) -> AsyncIterator[ModelT]:
        """Iterate over the matching instances.

        Raises:
            InvalidFieldError: ``chunk_size`` below 1, or an unknown field, lookup or
                order key (raised at the first iteration).

        Example:
            ```python
            async for user in users.stream(order_by="id"):
                ...
            ```
        """
        async for chunk in self.stream_chunks(
            *where, order_by=order_by, chunk_size=chunk_size, **filters
        ):
            for obj in chunk:
                yield obj

    async def stream_chunks(
        self,
        *where: Any,
        order_by: Any = None,
        chunk_size: int = 1000,
        options: Sequence[Any] = (),
        **filters: Any,
    ) -> AsyncIterator[builtins.list[ModelT]]:
        """Like `stream`, but yields lists of up to *chunk_size* instances.

        Example:
            ```python
            async for batch in users.stream_chunks(chunk_size=100):
                ...
            ```
        """
        check_stream_chunk_size(self.model, chunk_size)
        found = self._fake_select(where, filters, order_by)
        for start in range(0, len(found), chunk_size):
            yield found[start : start + chunk_size]

    async def paginate_cursor(
        self,
        *where: Any,
        limit: int,
        order_by: Any = None,
        after: str | None = None,
        before: str | None = None,
        options: Sequence[Any] = (),
        cursor_scope: str | None = None,
        **filters: Any,
    ) -> CursorPage[ModelT]:
        """One page of a keyset-paginated query, with the cursors `AsyncRepository` makes.

        The primary key is appended as the final tie-breaker; NULL sorts as the
        greatest value. Cursors are made and checked by the same code as those of
        `AsyncRepository`: the same model and ordering give interchangeable cursors,
        except for the columns a database orders by their stored text (dates and times
        on SQLite, native enums on MySQL / MariaDB).

        ``cursor_scope`` binds the cursors to a scope, as on `AsyncRepository.paginate_cursor`.

        Raises:
            InvalidCursorError: A cursor that is malformed, edited, or made for another
                model, ordering or scope.
            InvalidFieldError: Both ``after`` and ``before``; a bad ``limit``; an order
                key that is not a mapped column; an unknown field or lookup; a
                ``cursor_scope`` that is not a ``str``.

        Example:
            ```python
            page = await users.paginate_cursor(order_by="-id", limit=20)
            following = await users.paginate_cursor(
                order_by="-id", limit=20, after=page.next_cursor
            )
            ```
        """
        request = KeysetRequest.parse(
            self.model,
            order_by,
            limit=limit,
            after=after,
            before=before,
            scope=cursor_scope,
            secret=self.cursor_secret,
        )
        keys = request.keys

        def values_of(obj: Any) -> builtins.list[Any]:
            return [getattr(obj, name) for name, _ in keys]

        def compare(a: Sequence[Any], b: Sequence[Any]) -> int:
            for (_, descending), x, y in zip(keys, a, b, strict=True):
                result = _compare(x, y, descending=descending)
                if result:
                    return result
            return 0

        found = sort_instances(self._fake_select(where, filters), keys)
        position = request.position
        if request.backwards:
            found.reverse()
        if position is not None:
            sign = -1 if request.backwards else 1
            found = [obj for obj in found if compare(values_of(obj), position) * sign > 0]
        return request.page(found[: limit + 1], item=_same, values=values_of)

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
        self._insert([obj])
        return obj

    async def create_many(
        self, rows: Iterable[Any], *, chunk_size: int | None = None
    ) -> builtins.list[ModelT]:
        """Store several new instances, all or none; returned in input order.

        As with `AsyncRepository.create_many`, model instances passed in are read as data:
        the returned instances are new ones.

        Raises:
            InvalidFieldError: A row names an unknown field, or is not a mapping,
                instance, pydantic model or dataclass; nothing was stored.
            ConflictError: A duplicate key or unique value; nothing was stored.

        Example:
            ```python
            created = await users.create_many([{"email": "a@x.org", "name": "A"}])
            ```
        """
        check_chunk_size(self.model, chunk_size)
        objs = [self.model(**values) for values in row_values(self._info, rows, dialect=None)]
        self._insert(objs)
        return objs

    async def insert_many(self, rows: Iterable[Any], *, chunk_size: int | None = None) -> int:
        """Store several new rows without returning them; the number stored.

        Example:
            ```python
            assert await users.insert_many([{"email": "a@x.org", "name": "A"}]) == 1
            ```
        """
        return len(await self.create_many(rows, chunk_size=chunk_size))

    async def update(self, pk_or_instance: Any, data: Any = None, /, **values: Any) -> ModelT:
        """Assign fields of a stored instance (by primary key or instance).

        A pydantic model as *data* contributes only the fields explicitly set. A
        primary-key field is accepted only when it equals the current key.

        Raises:
            NotFoundError: Nothing is stored under the primary key.
            InvalidFieldError: A name that is not a writable mapped column, or a
                primary-key change.
            ConflictError: The new values break a unique or NOT NULL rule.

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
        obj = self._rows.get(current)
        if obj is None:
            raise not_found_error(self.model, pk_or_instance if not is_instance else current)
        self._update([(obj, fields)])
        return obj

    async def update_many(
        self, rows: Iterable[Mapping[str, Any]], *, chunk_size: int | None = None
    ) -> int:
        """Update stored rows by primary key, each with its own values; the number matched.

        Raises:
            InvalidFieldError: A row lacks the primary key, sets nothing else, or names
                an unknown field; nothing was changed.
            ConflictError: The new values break a unique rule; nothing was changed.

        Example:
            ```python
            await users.update_many([{"id": 1, "name": "A"}, {"id": 2, "name": "B"}])
            ```
        """
        check_chunk_size(self.model, chunk_size)
        pk = self._info.pk
        rows_values = row_values(self._info, rows, dialect=None)
        check_update_rows(self._info, rows_values)
        check_unique_rows(self.model, rows_values, pk)
        updates: builtins.list[tuple[ModelT, Mapping[str, Any]]] = []
        for row in rows_values:
            obj = self._rows.get(tuple(row[name] for name in pk))
            if obj is not None:
                updates.append((obj, {k: v for k, v in row.items() if k not in pk}))
        self._in_order([(update, None) for update in updates], onupdate=True)
        return len(updates)

    async def delete(self, pk_or_instance: Any) -> bool:
        """Remove an instance (by primary key or instance); whether anything was removed.

        Example:
            ```python
            assert await users.delete(ann.id)
            ```
        """
        if self._is_own_instance(pk_or_instance):
            identity = self._identity_of(pk_or_instance)
            if any(value is None for value in identity):
                return False
        else:
            identity = self._identity(pk_or_instance)
        return self._rows.pop(identity, None) is not None

    async def delete_many(self, pks: Iterable[Any], *, chunk_size: int | None = None) -> int:
        """Remove the instances with these primary keys; the number removed.

        Raises:
            InvalidFieldError: A composite key of the wrong shape; nothing was removed.

        Example:
            ```python
            assert await users.delete_many([1, 2]) == 2
            ```
        """
        check_chunk_size(self.model, chunk_size)
        keys = builtins.list(pks)
        check_key_shapes(self._info, keys)
        identities = [
            self._identity(key if len(self._info.pk) == 1 else tuple(key)) for key in keys
        ]
        return sum(self._rows.pop(identity, None) is not None for identity in set(identities))

    async def delete_where(self, *where: Any, all_rows: bool = False, **filters: Any) -> int:
        """Remove every instance matching the criteria; the number removed.

        Without any criterion it refuses, unless ``all_rows=True``.

        Raises:
            InvalidFieldError: No criteria and no ``all_rows=True``, or an unknown field
                or lookup.

        Example:
            ```python
            await users.delete_where(name__like="test%")
            ```
        """
        check_all_rows(self.model, all_rows)
        doomed = self._fake_select(where, filters)
        refuse_unbounded_delete(
            self.model,
            has_criteria=bool(where or filters),
            all_rows=all_rows,
            fields=self._info.columns,
        )
        for obj in doomed:
            del self._rows[self._identity_of(obj)]
        return len(doomed)

    async def upsert_many(
        self,
        rows: Iterable[Any],
        *,
        on_conflict: Sequence[str],
        update: Sequence[str] | None = None,
        chunk_size: int | None = None,
    ) -> int:
        """Insert rows, or update the stored row with the same *on_conflict* values.

        ``update=None`` overwrites every column a row gives except the conflict and
        primary-key columns; ``update=()`` leaves existing rows alone. Returns the
        number of rows inserted or updated (as on PostgreSQL and SQLite). Unlike a
        database, the fake also requires *on_conflict* to be the primary key or a
        unique constraint or index of the table, and says so with `InvalidFieldError`.

        Raises:
            InvalidFieldError: A bad ``on_conflict`` or ``update`` name, a row without
                them, or two rows with the same ``on_conflict`` values.
            ConflictError: Another unique rule failed; nothing was changed.

        Example:
            ```python
            await codes.upsert_many([{"code": "A", "label": "a"}], on_conflict=("code",))
            ```
        """
        check_chunk_size(self.model, chunk_size)
        conflict, explicit = check_upsert_options(self._info, on_conflict, update)
        rows_values = row_values(self._info, rows, dialect=None)
        check_upsert_rows(self._info, rows_values, group_by_keys(rows_values), conflict, explicit)
        if not any(set(keys) == set(conflict) for _, keys in self._info.unique):
            raise unique_key_error(self.model, conflict)
        existing = {
            tuple(obj.__dict__.get(name) for name in conflict): obj for obj in self._rows.values()
        }
        writes: builtins.list[tuple[tuple[ModelT, Mapping[str, Any]] | None, ModelT | None]] = []
        for row in rows_values:
            target = existing.get(tuple(row[name] for name in conflict))
            if target is None:
                writes.append((None, self.model(**row)))
                continue
            if explicit is None:
                names = [k for k in row if k not in conflict and k not in self._info.pk]
            else:
                names = builtins.list(explicit)
            if names:
                writes.append(((target, {name: row[name] for name in names}), None))
        self._in_order(writes, onupdate=False)
        return len(writes)
