"""The unit of work: `AbstractUnitOfWork` and `SQLAlchemyUnitOfWork`."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Any, ClassVar, TypeVar, cast, get_args, get_origin, get_type_hints

from sqlalchemy.ext.asyncio import AsyncSession

from ._repository import AsyncRepository
from ._transaction import (
    WITH_TRANSACTION,
    Propagation,
    TransactionManager,
    TransactionScope,
    flush_session,
)
from .exceptions import IllegalTransactionStateError, TransactionRequiredError

__all__ = ["AbstractUnitOfWork", "SQLAlchemyUnitOfWork"]

_UowT = TypeVar("_UowT", bound="AbstractUnitOfWork")
_SqlaUowT = TypeVar("_SqlaUowT", bound="SQLAlchemyUnitOfWork")


class AbstractUnitOfWork(abc.ABC):
    """The interface services depend on: an async context manager with commit and rollback.

    `SQLAlchemyUnitOfWork` implements it on a database; `sqla_uow.testing.FakeUnitOfWork`
    in memory. The default ``__aexit__`` rolls back when an exception leaves the block;
    subclasses decide what a clean exit does.

    Example:
        ```python
        async def register(uow: AbstractUnitOfWork, email: str) -> None:
            async with uow:
                await uow.users.create(email=email)
                await uow.commit()
        ```
    """

    async def __aenter__(self: _UowT) -> _UowT:
        """Begin the unit of work.

        Example:
            ```python
            async with uow:
                ...
            ```
        """
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """End the unit of work: roll back if an exception left the block.

        Example:
            ```python
            async with uow:
                raise ValueError  # rolled back
            ```
        """
        if exc is not None:
            await self.rollback()

    @abc.abstractmethod
    async def commit(self) -> None:
        """Make the work done so far permanent.

        Example:
            ```python
            await uow.commit()
            ```
        """

    @abc.abstractmethod
    async def rollback(self) -> None:
        """Undo the work done since the last commit.

        Example:
            ```python
            await uow.rollback()
            ```
        """


def _as_repository_class(obj: object) -> type[AsyncRepository[Any]] | None:
    if not (isinstance(obj, type) and issubclass(obj, AsyncRepository)):
        return None
    return cast("type[AsyncRepository[Any]]", cast(Any, obj))


def _repository_factory(hint: Any) -> tuple[type[AsyncRepository[Any]], type[Any] | None] | None:
    """``(repository class, model or None)`` for an annotation naming a repository."""
    repository = _as_repository_class(hint)
    if repository is not None:
        return repository, None
    repository = _as_repository_class(get_origin(hint))
    if repository is not None:
        args = get_args(hint)
        model = args[0] if args and isinstance(args[0], type) else None
        return repository, model
    return None


class SQLAlchemyUnitOfWork(AbstractUnitOfWork):
    """A unit of work on a `TransactionManager`: one transaction, repositories bound to it.

    Declare repositories as class annotations; entering the unit of work opens
    ``tm.transaction(...)`` and binds one instance of each to its session::

        class ShopUnitOfWork(SQLAlchemyUnitOfWork):
            users: UserRepository
            orders: AsyncRepository[Order]

    A clean exit commits (``autocommit=True``, the default). With ``autocommit=False``
    work must be committed with `commit`; what was not is rolled back at exit. An
    exception rolls back and propagates. `commit` and `rollback` may be called in the
    middle: the unit of work then continues in a fresh transaction with the same
    settings.

    Entered inside an outer transaction (``propagation=REQUIRED``, the default), the
    unit of work joins it: `commit` only flushes and leaves the COMMIT to the owner of
    the transaction, `rollback` marks the transaction rollback-only, and an exception
    leaving it marks the transaction rollback-only. A joined unit of work with
    ``autocommit=False`` cannot roll back its own part: it leaves everything to the
    owner. With ``propagation=NESTED`` it runs in a SAVEPOINT instead, which it releases
    or rolls back itself (and ``autocommit=False`` rolls back to it at exit).

    An instance can be used again after its block ended; entering it while it is
    active raises `IllegalTransactionStateError`.

    Example:
        ```python
        async with ShopUnitOfWork(tm) as uow:
            user = await uow.users.create(email="a@example.com", name="A")
            await uow.orders.create(user_id=user.id, title="Book", price=12.5)
        # committed here
        ```
    """

    _repository_specs: ClassVar[dict[type[Any], dict[str, tuple[type[Any], type[Any] | None]]]] = {}

    def __init__(
        self,
        tm: TransactionManager,
        *,
        autocommit: bool = True,
        propagation: Propagation = Propagation.REQUIRED,
        isolation_level: str | None = None,
        read_only: bool = False,
    ) -> None:
        """Make a unit of work; nothing touches the database before ``async with``.

        Args:
            tm: The transaction manager.
            autocommit: Commit on a clean exit. With ``False``, work not committed
                with `commit` is rolled back at exit.
            propagation: One of REQUIRED (default), REQUIRES_NEW, NESTED, MANDATORY: a
                unit of work always has a transaction.
            isolation_level: Isolation level where it begins a transaction.
            read_only: Begin a read-only transaction.

        Raises:
            ValueError: a propagation without a transaction, or an unknown isolation
                level.
            TypeError: the repository annotations cannot be resolved.

        Example:
            ```python
            uow = ShopUnitOfWork(tm, autocommit=False, isolation_level="SERIALIZABLE")
            ```
        """
        if not isinstance(tm, TransactionManager):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"{type(self).__name__}() needs a TransactionManager, not {tm!r}")
        if propagation not in WITH_TRANSACTION:
            raise ValueError(
                f"a unit of work needs a transaction; propagation {propagation!r} is not "
                "allowed. Choices: "
                + ", ".join(f"Propagation.{p.name}" for p in Propagation if p in WITH_TRANSACTION)
            )
        # Validates the isolation level and read-only support before any SQL is sent.
        tm.transaction(
            propagation=propagation, isolation_level=isolation_level, read_only=read_only
        )
        self._tm = tm
        self.autocommit = autocommit
        self._propagation = propagation
        self._isolation_level = isolation_level
        self._read_only = read_only
        self._scope: TransactionScope | None = None
        self._session: AsyncSession | None = None
        self._specs = self._resolve_repositories()

    @classmethod
    def _resolve_repositories(cls) -> dict[str, tuple[type[Any], type[Any] | None]]:
        cached = SQLAlchemyUnitOfWork._repository_specs.get(cls)
        if cached is not None:
            return cached
        try:
            hints = get_type_hints(cls)
        except Exception as exc:
            raise TypeError(
                f"cannot resolve the annotations of {cls.__qualname__} ({exc}); define the "
                "repository classes where the unit of work's module can see them"
            ) from exc
        specs: dict[str, tuple[type[Any], type[Any] | None]] = {}
        for name, hint in hints.items():
            if name.startswith("_"):
                continue
            factory = _repository_factory(hint)
            if factory is not None:
                specs[name] = factory
        SQLAlchemyUnitOfWork._repository_specs[cls] = specs
        return specs

    def __getattr__(self, name: str) -> Any:
        """Only called for a missing attribute: a repository outside ``async with``."""
        specs = self.__dict__.get("_specs", {})
        if name in specs:
            raise TransactionRequiredError(
                f"{type(self).__name__}.{name} is available only inside `async with uow:`"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def active(self) -> bool:
        """Whether the unit of work is inside its ``async with`` block.

        Example:
            ```python
            async with uow:
                assert uow.active
            ```
        """
        return self._scope is not None

    @property
    def session(self) -> AsyncSession:
        """The session of the unit of work's transaction.

        Raises:
            TransactionRequiredError: outside ``async with uow:``.

        Example:
            ```python
            async with uow:
                await uow.session.execute(text("SELECT 1"))
            ```
        """
        if self._session is None:
            raise TransactionRequiredError(
                f"{type(self).__name__}.session is available only inside `async with uow:`"
            )
        return self._session

    async def __aenter__(self: _SqlaUowT) -> _SqlaUowT:
        """Open the transaction scope and bind the repositories to its session.

        Raises:
            IllegalTransactionStateError: the unit of work is already active.

        Example:
            ```python
            async with ShopUnitOfWork(tm) as uow:
                ...
            ```
        """
        if self._scope is not None:
            raise IllegalTransactionStateError(
                f"{type(self).__name__} is already active; a unit of work cannot be entered "
                "again inside its own block (make a second instance to join or nest)"
            )
        scope = self._tm.transaction(
            propagation=self._propagation,
            isolation_level=self._isolation_level,
            read_only=self._read_only,
        )
        assert isinstance(scope, TransactionScope)
        session = await scope.__aenter__()
        assert session is not None
        try:
            repositories = {
                name: repository(session, model=model) if model is not None else repository(session)
                for name, (repository, model) in self._specs.items()
            }
        except BaseException as exc:
            await scope.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._scope = scope
        self._session = session
        for name, instance in repositories.items():
            setattr(self, name, instance)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Commit on a clean exit (with autocommit), otherwise roll back.

        Raises:
            RollbackOnlyError: a joined scope inside failed and its exception was
                swallowed, so the transaction was rolled back.

        Example:
            ```python
            async with ShopUnitOfWork(tm) as uow:
                await uow.users.create(email="a@example.com", name="A")
            ```
        """
        scope = self._scope
        if scope is None:
            return
        try:
            if exc is None:
                if self.autocommit:
                    if scope.kind == "join":
                        try:
                            await flush_session(self.session)
                        except BaseException as error:
                            await scope.__aexit__(type(error), error, error.__traceback__)
                            raise
                else:
                    scope.discard_on_exit = True
            await scope.__aexit__(exc_type, exc, tb)
        finally:
            self._scope = None
            self._session = None
            for name in self._specs:
                vars(self).pop(name, None)

    def _active_scope(self, action: str) -> TransactionScope:
        if self._scope is None:
            raise TransactionRequiredError(
                f"{type(self).__name__}.{action}() needs an active unit of work; call it "
                "inside `async with uow:`"
            )
        return self._scope

    async def commit(self) -> None:
        """Commit the work so far; the unit of work goes on in a new transaction.

        Where the unit of work owns the transaction, the on_commit callbacks registered
        so far run right after the COMMIT (inside the unit of work, whose next
        transaction has begun). In a joined unit of work this only flushes (the owner
        of the transaction commits); a failure of that flush marks the transaction
        rollback-only. In a NESTED one it releases the savepoint and opens the next one.

        Raises:
            TransactionRequiredError: outside ``async with uow:``.
            RollbackOnlyError: a joined scope inside failed; the work was rolled back.

        Example:
            ```python
            async with ShopUnitOfWork(tm, autocommit=False) as uow:
                await uow.users.create(email="a@example.com", name="A")
                await uow.commit()
            ```
        """
        await self._active_scope("commit").commit_and_continue()

    async def rollback(self) -> None:
        """Roll back the work since the last commit; the unit of work goes on.

        In a joined unit of work the outer work cannot be undone separately: this
        marks the transaction rollback-only. In a NESTED one it rolls back to the
        savepoint.

        Raises:
            TransactionRequiredError: outside ``async with uow:``.

        Example:
            ```python
            async with ShopUnitOfWork(tm) as uow:
                await uow.users.create(email="a@example.com", name="A")
                await uow.rollback()
            ```
        """
        await self._active_scope("rollback").rollback_and_continue()
