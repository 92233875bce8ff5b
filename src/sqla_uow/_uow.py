"""The unit of work: `AbstractUnitOfWork` and `SQLAlchemyUnitOfWork`."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Any, ClassVar, TypeVar, cast, get_args, get_origin, get_type_hints

from sqlalchemy.ext.asyncio import AsyncSession

from ._repository import AsyncRepository
from ._transactions import (
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
    leaving it marks the transaction rollback-only. A unit of work with
    ``autocommit=False`` that would join runs in a SAVEPOINT instead: `commit` releases
    it (the owner still commits), `rollback` and the exit roll back to it what was not
    committed, and an exception leaving it also marks the transaction rollback-only.
    With ``propagation=NESTED`` it always runs in a SAVEPOINT, which it releases or
    rolls back itself.

    A `commit` that fails (a `ConflictError` at flush, a failed COMMIT) rolls back the
    work since the previous commit and the unit of work goes on in a fresh transaction
    (or savepoint); in a joined one it marks the transaction rollback-only.

    Objects stay readable after the unit of work ends, also when it rolled back:
    objects it only read keep their values, new objects of rolled-back work become
    transient, and objects whose changes were rolled back are expired.

    Repository attributes cannot reuse the names of the unit of work's own members
    (``session``, ``commit``, ``rollback``, ``active``, ``autocommit``, ...).

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
            TypeError: the repository annotations cannot be resolved or reuse the name
                of a member of the unit of work, or *autocommit* / *read_only* is not a
                bool.

        Example:
            ```python
            uow = ShopUnitOfWork(tm, autocommit=False, isolation_level="SERIALIZABLE")
            ```
        """
        if not isinstance(tm, TransactionManager):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"{type(self).__name__}() needs a TransactionManager, not {tm!r}")
        if not isinstance(autocommit, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"autocommit must be True or False, not {autocommit!r}")
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
        self._scope: TransactionScope[AsyncSession | None] | None = None
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
            if factory is None:
                continue
            if name in _RESERVED_NAMES or callable(getattr(cls, name, None)):
                raise TypeError(
                    f"{cls.__qualname__}.{name}: a repository cannot be named {name!r}, the "
                    "name of a member of the unit of work; reserved names: "
                    + ", ".join(sorted(n for n in _RESERVED_NAMES if not n.startswith("_")))
                )
            if isinstance(getattr(cls, name, None), property):
                raise TypeError(
                    f"{cls.__qualname__}.{name}: a repository cannot be named {name!r}, "
                    "which the class defines as a property"
                )
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
        # Explicit style: in an outer transaction, run in a savepoint so that the work
        # not committed with `commit` can be rolled back at exit.
        scope.discard_on_exit = not self.autocommit
        session = await scope.__aenter__()
        assert session is not None
        try:
            for name, (repository, model) in self._specs.items():
                instance = (
                    repository(session, model=model) if model is not None else repository(session)
                )
                setattr(self, name, instance)
        except BaseException as exc:
            for name in self._specs:
                vars(self).pop(name, None)
            await scope.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._scope = scope
        self._session = session
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
                scope.discard_on_exit = not self.autocommit
                if self.autocommit and scope.joined:
                    try:
                        await flush_session(self.session)
                    except BaseException as error:
                        await scope.__aexit__(type(error), error, error.__traceback__)
                        raise
            await scope.__aexit__(exc_type, exc, tb)
        finally:
            self._scope = None
            self._session = None
            for name in self._specs:
                vars(self).pop(name, None)

    def _active_scope(self, action: str) -> TransactionScope[AsyncSession | None]:
        if self._scope is None:
            raise TransactionRequiredError(
                f"{type(self).__name__}.{action}() needs an active unit of work; call it "
                "inside `async with uow:`"
            )
        return self._scope

    async def commit(self) -> None:
        """Commit the work so far; the unit of work goes on in a new transaction.

        Where the unit of work owns the transaction, the on_commit callbacks registered
        so far run right after the COMMIT, before the next transaction begins and
        outside the unit of work (a callback's own transaction scope does not join
        it). In a joined unit of work this only flushes (the owner of the transaction
        commits); a failure of that flush marks the transaction rollback-only. In a
        NESTED one (and an explicit-style one inside an outer transaction) it releases
        the savepoint and opens the next one. A commit that fails rolls back the work
        since the previous commit and the unit of work goes on in a fresh transaction
        or savepoint (unless the task was cancelled or the connection lost).

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
        marks the transaction rollback-only. In a NESTED one (and an explicit-style
        one inside an outer transaction) it rolls back to the savepoint. Objects the
        rolled-back work left unchanged keep their values.

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


_RESERVED_NAMES: frozenset[str] = frozenset(dir(SQLAlchemyUnitOfWork)) | {"autocommit"}
"""Names a repository attribute cannot take: the unit of work's own members."""
