"""`AsyncRepository`: typed reads and single-row writes for one mapped class."""

from __future__ import annotations

from typing import Any, ClassVar, TypeGuard, TypeVar, get_args, get_origin

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.state import InstanceState

from ._bulk import BulkOperationsMixin
from ._deletes import DeleteMixin
from ._filters import (
    as_values,
    check_assignable,
    check_write_values,
    drop_unchanged_key,
)
from ._model import model_meta
from ._pages import PageMixin
from ._pagination import check_secret
from ._reads import OrderBy, OrderByItem
from ._typing import ModelT
from ._versioning import check_version
from .exceptions import ConflictError, InvalidFieldError

__all__ = ["AsyncRepository", "ModelT", "OrderBy", "OrderByItem"]


class AsyncRepository(DeleteMixin[ModelT], PageMixin[ModelT], BulkOperationsMixin[ModelT]):
    """Reads and writes of one mapped class through an `AsyncSession`.

    Subclass it with the model as type argument; the model is inferred from it (also
    through intermediate generic subclasses), or set ``model = User`` on the class, or
    pass ``model=`` to the constructor.

    Writes flush but never commit: committing is the job of the transaction (a unit of
    work, ``@transactional`` or ``TransactionManager.transaction()``). An integrity
    violation found at flush raises `ConflictError`; like any failed flush it leaves the
    session's transaction to be rolled back (use ``Propagation.NESTED`` to recover
    inside a larger transaction).

    Which reads reach the database: `get` / `get_one` answer from the session's identity
    map when the object is already loaded (no SQL), except with ``for_update=True`` or
    loader ``options``, which always query and refresh the object. All other reads
    always query; objects already in the session are returned as the same instances.

    Attributes:
        model: The mapped class.
        session: The `AsyncSession` this repository reads and writes through.
        cursor_secret: Key for the checksum of `paginate_cursor` cursors. Set it (to
            ``bytes`` kept secret) to make cursors unforgeable, not only tamper-evident.
            An empty secret, one that is not ``bytes`` or the public default key is
            refused (``ValueError`` / ``TypeError``) when the class is defined or a
            cursor page is asked for.

    Example:
        ```python
        class UserRepository(AsyncRepository[User]):
            async def get_by_email(self, email: str) -> User | None:
                return await self.find_one(email=email)

        users = UserRepository(session)
        ann = await users.create(email="ann@example.com", name="Ann")
        same = await users.get_one(ann.id)
        page = await users.paginate(name__ilike="a%", order_by="-id", limit=20)
        ```
    """

    model: type[ModelT]
    session: AsyncSession
    cursor_secret: ClassVar[bytes | None] = None
    _model_param: ClassVar[Any] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_secret(cls.__name__, cls.__dict__.get("cursor_secret"))
        explicit = cls.__dict__.get("model")
        param = explicit if explicit is not None else _resolve_model_param(cls)
        cls._model_param = param
        if isinstance(param, type) and explicit is None:
            cls.model = param

    def __init__(self, session: AsyncSession, *, model: type[ModelT] | None = None) -> None:
        """Bind the repository to *session*.

        Args:
            session: The session to read and write through.
            model: The mapped class, when neither the type argument nor a ``model``
                class attribute names it.

        Raises:
            TypeError: No model is known, or it is not a mapped class.
        """
        if model is not None:
            self.model = model
        found = getattr(self, "model", None)
        if not isinstance(found, type):
            name = type(self).__name__
            raise TypeError(
                f"{name} has no model: subclass AsyncRepository[YourModel], set "
                f"`model = YourModel` on {name}, or pass model=YourModel"
            )
        self._meta = model_meta(found)
        self._mapper: Mapper[Any] = self._meta.mapper
        self._pk_names = self._meta.pk
        self.session = session
        self._init_scoping()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} model={self.model.__name__}>"

    async def _load_expired(self, obj: ModelT) -> None:
        """Load column attributes a flush expired (server-side defaults / onupdate values).

        Without this, reading such an attribute later would lazy-load, which fails in
        async code. Costs a SELECT only when the flush did not return the values.
        """
        state: InstanceState[Any] = instance_state(obj)
        if state.key is None or not state.expired_attributes:
            return
        expired = state.expired_attributes & self._meta.writable_keys
        if expired:
            await self.session.refresh(obj, attribute_names=sorted(expired))

    # ---------------------------------------------------------------------------- writes

    async def create(self, data: Any = None, /, **values: Any) -> ModelT:
        """Add a new object and flush it; returns it with its primary key set.

        Args:
            data: A model instance, a mapping, a pydantic model (only the fields
                explicitly set, as ``model_dump(exclude_unset=True)``, so that column
                defaults apply to the others) or a dataclass instance. Omit it to pass
                fields as keywords only.
            **values: Field values; they override those of *data*.

        Server-side defaults are loaded after the flush (from ``RETURNING`` where the
        database has it, otherwise with one SELECT), so every column is readable.

        Raises:
            InvalidFieldError: A name that is not a writable mapped column, or a value
                its column cannot store (checked before any SQL).
            ConflictError: The INSERT broke a unique, foreign-key, not-null or check
                constraint.

        Example:
            ```python
            ann = await users.create(email="ann@example.com", name="Ann")
            bob = await users.create(UserIn(email="bob@example.com", name="Bob"))
            ```
        """
        dialect = self._dialect()
        scope = self._active_scope() if self._scoping else None  # hot path
        if self._check_own_instance(data):
            check_assignable(self.model, values)
            obj: ModelT = data
            for key, value in values.items():
                setattr(obj, key, value)
            given = as_values(obj, {})
            checked = check_write_values(self.model, given, dialect=dialect)
            if scope is not None:
                checked = scope.filled(checked)
            for key, value in checked.items():
                if key not in given or value is not given[key]:
                    setattr(obj, key, value)
        else:
            # A pydantic model contributes the fields that were set, so a field left
            # at its default does not override the column's default.
            fields = as_values(data, values, exclude_unset=True)
            check_assignable(self.model, fields)
            fields = check_write_values(self.model, fields, dialect=dialect)
            if scope is not None:
                fields = scope.filled(fields)
            obj = self.model(**fields)
        self._check_identity_free(obj)
        self.session.add(obj)
        await self._flush()
        await self._load_expired(obj)
        return obj

    def _check_identity_free(self, obj: ModelT) -> None:
        """Refuse a new object whose primary key is already loaded in the session.

        SQLAlchemy would warn and then fail at flush; this raises the same
        `ConflictError` the database would, without sending SQL.
        """
        loaded = instance_state(obj).dict
        if any(loaded.get(name) is None for name in self._pk_names):
            return  # the database assigns the key (or the INSERT fails on NULL)
        key = self._mapper.identity_key_from_instance(obj)
        if any(value is None for value in key[1]):
            return
        sync_session = self.session.sync_session
        existing = sync_session.identity_map.get(key)
        if existing is None or existing is obj or existing in sync_session.deleted:
            return
        raise ConflictError(
            f"unique violation writing {self.model.__name__} (primary key "
            f"{key[1]!r} is already loaded in this session)",
            kind="unique",
            model=self.model,
            columns=[col.name for col in self._mapper.primary_key],
        )

    async def update(self, pk_or_instance: Any, data: Any = None, /, **values: Any) -> ModelT:
        """Assign fields of an object (by primary key or instance) and flush.

        Args:
            pk_or_instance: The primary key, or an instance. For a detached instance
                the row is loaded (from the identity map when present) and only the
                given fields and the attributes changed on the instance since it was
                loaded are written; its other, possibly stale, values are not.
            data: A mapping, a pydantic model (only fields explicitly set are used, as
                ``model_dump(exclude_unset=True)``), a dataclass or a model instance.
            **values: Field values; they override those of *data*.

        A primary-key field is accepted only when it equals the current key; changing a
        primary key is refused (it would orphan identity-map entries and references).

        Columns with a SQL ``onupdate`` or ``server_onupdate`` value are read back after
        the flush with one SELECT, so they stay readable; map the model with
        ``__mapper_args__ = {"eager_defaults": True}`` to get them from ``RETURNING``
        instead where the database has it.

        On a versioned model (`sqla_uow.mixins.VersionedMixin`) a ``version`` field is
        the version the caller read, not a value to write: the update goes ahead only
        at that version (a detached instance's own version counts the same way), and
        the database increments it.

        Raises:
            NotFoundError: No row has the primary key.
            InvalidFieldError: A name that is not a writable mapped column, or a
                primary-key change (checked before any SQL).
            ConflictError: The UPDATE broke a constraint; ``kind="stale"``: the row is
                at another version than the one given, or another transaction changed
                it since it was loaded.

        Example:
            ```python
            ann = await users.update(ann.id, name="Ann B.")
            ann = await users.update(ann, UserPatch(name="Ann C."))
            ```
        """
        is_instance = self._check_own_instance(pk_or_instance)
        if self._check_own_instance(data):
            fields = as_values(data, values)
            for name in self._pk_names:  # an unsaved instance carries no key
                if name in fields and fields[name] is None and name not in values:
                    del fields[name]
        else:
            fields = as_values(data, values, exclude_unset=True)
        check_assignable(self.model, fields)
        if is_instance:
            state: InstanceState[Any] = inspect(pk_or_instance)
            current = (
                tuple(state.identity)
                if state.identity is not None
                else tuple(self._mapper.primary_key_from_instance(pk_or_instance))
            )
        else:
            current = self._identity(pk_or_instance)
        fields = check_write_values(self.model, fields, dialect=self._dialect())
        drop_unchanged_key(self.model, fields, current)
        scope = self._active_scope()
        if scope is not None:
            scope.keep(fields)
        expected = self._expected_version(pk_or_instance, fields, is_instance=is_instance)
        obj = await self._resolve(pk_or_instance, fields, is_instance=is_instance)
        if scope is not None:
            scope.keep(fields)  # with a detached instance's changes
        if expected is not None:
            check_version(obj, *expected, current)
        for key, value in fields.items():
            setattr(obj, key, value)
        await self._flush()
        await self._load_expired(obj)
        return obj

    def _expected_version(
        self, pk_or_instance: Any, fields: dict[str, Any], *, is_instance: bool
    ) -> tuple[str, Any] | None:
        """(version key, the version an `update` expects the row at), taken out of *fields*.

        The ``version`` field given, else the version a detached instance carries;
        None: no version to check.
        """
        key = self._meta.version_key
        if key is None:
            return None
        expected = fields.pop(key, None)
        if expected is None and is_instance and pk_or_instance not in self.session:
            expected = instance_state(pk_or_instance).dict.get(key)
        return None if expected is None else (key, expected)

    async def _resolve(
        self, pk_or_instance: Any, fields: dict[str, Any], *, is_instance: bool
    ) -> ModelT:
        """The persistent object to update; adds a detached instance's changes to *fields*."""
        if not is_instance:
            return await self.get_one(pk_or_instance)
        obj: ModelT = pk_or_instance
        state: InstanceState[Any] = inspect(obj)
        if obj in self.session:
            if not self._scoping or state.identity is None:
                return obj
            return await self.get_one(tuple(state.identity))  # only when in the scope
        if state.key is None or state.identity is None:
            raise InvalidFieldError(
                f"update() needs a stored {self.model.__name__}; this one was never "
                "saved (use create())",
                model=self.model,
            )
        # Not session.merge(): it would copy every loaded attribute of the detached
        # instance, writing back values another transaction may have changed since.
        writable = self._meta.writable_keys
        loaded = state.dict
        for key in state.committed_state:
            if key in writable and key in loaded and key not in fields:
                fields[key] = loaded[key]
        for name in self._pk_names:
            fields.pop(name, None)
        if self._meta.version_key is not None:  # the expected version, not a value
            fields.pop(self._meta.version_key, None)
        return await self.get_one(tuple(state.identity))


def _is_repository_class(value: object) -> TypeGuard[type[AsyncRepository[Any]]]:
    # Spells out the type argument ``isinstance``/``issubclass`` would leave unknown.
    return isinstance(value, type) and issubclass(value, AsyncRepository)


def _resolve_model_param(cls: type[Any]) -> Any:
    """The model (or still-open TypeVar) *cls* binds AsyncRepository's ModelT to."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(base)
        if not _is_repository_class(origin):
            continue
        param = origin._model_param
        if isinstance(param, TypeVar):
            parameters = getattr(origin, "__parameters__", ())
            args = get_args(base)
            if param in parameters and len(args) == len(parameters):
                return args[parameters.index(param)]
        return param
    for base in cls.__bases__:
        if issubclass(base, AsyncRepository):
            return base._model_param
    return None


AsyncRepository._model_param = getattr(AsyncRepository, "__parameters__", (None,))[0]
