"""`FakeUnitOfWork`: a unit of work over in-memory repositories that really rolls back."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any, TypeVar, cast, get_args, get_origin, get_type_hints

from sqla_uow._uow import AbstractUnitOfWork
from sqla_uow.exceptions import (
    IllegalTransactionStateError,
    RollbackOnlyError,
    TransactionRequiredError,
)

from ._memory import InMemoryRepository
from ._store import Snapshot

__all__ = ["FakeUnitOfWork"]

_FakeUowT = TypeVar("_FakeUowT", bound="FakeUnitOfWork")


def _is_repository_class(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, InMemoryRepository)


def _repository_factory(hint: Any) -> type[InMemoryRepository[Any]] | tuple[type[Any]] | None:
    """The repository class to build for an annotation, or ``(model,)`` for a generic alias."""
    if _is_repository_class(hint):
        return cast("type[InMemoryRepository[Any]]", hint)
    origin: Any = get_origin(hint)
    if _is_repository_class(origin):
        args = get_args(hint)
        if args and isinstance(args[0], type):
            return (args[0],)
        return cast("type[InMemoryRepository[Any]]", origin)
    return None


class FakeUnitOfWork(AbstractUnitOfWork):
    """A unit of work for service tests: in-memory repositories, real rollback.

    It behaves like `SQLAlchemyUnitOfWork` without a database. A clean exit from
    ``async with`` commits (``autocommit=False`` selects the explicit style, where work
    not committed with `commit` is rolled back at exit); an exception rolls back and
    propagates. Rolling back restores the repositories to their state at the last
    commit (or at entry): rows created since disappear, deleted rows come back and
    changed instances get their old values again. The repositories outlive each
    block, like the tables of a database.

    As on `SQLAlchemyUnitOfWork`, the repositories are attributes only inside
    ``async with`` (elsewhere they raise `TransactionRequiredError`); a test inspects
    them afterwards through `repositories`, or through its own reference to a
    repository it passed in. `committed` and `rolled_back` record what the last block
    did, so a test asserts on what the code under test really caused.

    A second unit of work entered while one sharing a repository is active joins it,
    as a unit of work joins an outer transaction: its `commit` leaves the commit to
    the outer one, and its `rollback` or an exception leaving it marks the work
    rollback-only, so that the outer block rolls back and raises `RollbackOnlyError`
    even if the exception was caught in between. A `ConflictError` raised by one of its
    repositories marks the work rollback-only too, as a database error does under
    `TransactionManager`: code that catches the conflict and carries on gets
    `RollbackOnlyError` at the exit (or from `commit`), in tests as in production.
    Entering the same instance again while it is active raises
    `IllegalTransactionStateError`, as the real one does.

    Repositories are given as keyword arguments, or declared as annotations of a
    subclass (``InMemoryRepository[Model]``, or a subclass of `InMemoryRepository`
    that names its model), which creates them empty.

    Example:
        ```python
        from sqla_uow.testing import FakeUnitOfWork, InMemoryRepository

        users = InMemoryRepository(User)
        uow = FakeUnitOfWork(users=users)
        with pytest.raises(ValueError):
            async with uow:
                await uow.users.create(email="ann@example.com", name="Ann")
                raise ValueError("payment declined")
        assert uow.rolled_back
        assert users.rows == []

        class FakeShopUnitOfWork(FakeUnitOfWork):
            users: FakeUserRepository
            orders: InMemoryRepository[Order]
        ```
    """

    committed: bool
    """Whether the last ``async with`` block committed (by `commit` or at a clean exit)."""
    rolled_back: bool
    """Whether the last ``async with`` block rolled back work (or, joined, marked it)."""
    autocommit: bool
    """Whether a clean exit commits."""

    def __init__(self, *, autocommit: bool = True, **repositories: InMemoryRepository[Any]) -> None:
        """Make a unit of work over the given repositories and the declared ones.

        Args:
            autocommit: Commit at a clean exit (the default). With ``False``, work not
                committed with `commit` is rolled back at exit.
            **repositories: In-memory repositories, attributes of the unit of work
                inside ``async with`` under these names.

        Raises:
            TypeError: a repository is not an `InMemoryRepository`.

        Example:
            ```python
            uow = FakeUnitOfWork(users=InMemoryRepository(User), autocommit=False)
            ```
        """
        self.autocommit = autocommit
        self.committed = False
        self.rolled_back = False
        found: dict[str, InMemoryRepository[Any]] = {}
        try:
            hints = get_type_hints(type(self))
        except Exception as exc:
            raise TypeError(
                f"cannot resolve the annotations of {type(self).__qualname__} ({exc}); define "
                "the repository classes where the unit of work's module can see them"
            ) from exc
        for name, hint in hints.items():
            if name.startswith("_") or name in repositories:
                continue
            factory = _repository_factory(hint)
            if isinstance(factory, tuple):
                found[name] = InMemoryRepository(factory[0])
            elif factory is not None:
                found[name] = factory()
        for name, repository in repositories.items():
            candidate = cast(object, repository)
            if not isinstance(candidate, InMemoryRepository):
                raise TypeError(
                    f"{type(self).__name__} repository {name!r} must be an InMemoryRepository, "
                    f"got {type(repository).__name__}"
                )
            found[name] = repository
        self._repositories = found
        self._active = False
        self._owner: FakeUnitOfWork | None = None
        self._rollback_only = False
        self._rollback_cause: BaseException | None = None
        self._claimed: dict[int, tuple[InMemoryRepository[Any], Snapshot]] = {}

    def __getattr__(self, name: str) -> Any:
        """Only called for a missing attribute: a repository outside ``async with``."""
        repositories = self.__dict__.get("_repositories", {})
        if name in repositories:
            raise TransactionRequiredError(
                f"{type(self).__name__}.{name} is available only inside `async with uow:`; "
                f"a test can inspect it as uow.repositories[{name!r}]"
            )
        if name == "session":
            raise AttributeError(
                f"{type(self).__name__} has no session: code that runs SQL through "
                "uow.session needs a database (test it with SQLAlchemyUnitOfWork)"
            )
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}; "
            f"repositories: {', '.join(sorted(repositories)) or 'none'}"
        )

    @property
    def repositories(self) -> dict[str, InMemoryRepository[Any]]:
        """The repositories by name, available inside and outside ``async with``.

        Example:
            ```python
            assert uow.repositories["users"].rows == []
            ```
        """
        return dict(self._repositories)

    @property
    def active(self) -> bool:
        """Whether the unit of work is inside its ``async with`` block.

        Example:
            ```python
            async with uow:
                assert uow.active
            ```
        """
        return self._active

    def _claim(self, repositories: Iterable[InMemoryRepository[Any]]) -> None:
        """Own the repositories that no active unit of work owns; snapshot them."""
        for repo in repositories:
            if repo._unit_of_work is None:  # pyright: ignore[reportPrivateUsage]
                repo._unit_of_work = self  # pyright: ignore[reportPrivateUsage]
                self._claimed[id(repo)] = (repo, repo._snapshot())  # pyright: ignore[reportPrivateUsage]

    def _take_snapshots(self) -> None:
        self._claimed = {key: (repo, repo._snapshot()) for key, (repo, _) in self._claimed.items()}  # pyright: ignore[reportPrivateUsage]

    def _changed(self) -> bool:
        for repo, saved in self._claimed.values():
            current = repo._snapshot()  # pyright: ignore[reportPrivateUsage]
            if saved.keys() != current.keys():
                return True
            for identity, (obj, values) in current.items():
                old_obj, old_values = saved[identity]
                if obj is not old_obj or values != old_values:
                    return True
        return False

    async def __aenter__(self: _FakeUowT) -> _FakeUowT:
        """Begin the unit of work, or join the active one that shares a repository.

        Raises:
            IllegalTransactionStateError: this unit of work is already active.

        Example:
            ```python
            async with uow:
                ...
            ```
        """
        if self._active:
            raise IllegalTransactionStateError(
                f"{type(self).__name__} is already active; a unit of work cannot be entered "
                "again inside its own block (make a second instance to join or nest)"
            )
        owner = next(
            (
                repo._unit_of_work  # pyright: ignore[reportPrivateUsage]
                for repo in self._repositories.values()
                if repo._unit_of_work is not None and repo._unit_of_work is not self  # pyright: ignore[reportPrivateUsage]
            ),
            None,
        )
        self.committed = False
        self.rolled_back = False
        self._rollback_only = False
        self._rollback_cause = None
        self._owner = owner
        (owner or self)._claim(self._repositories.values())
        self._active = True
        for name, repo in self._repositories.items():
            setattr(self, name, repo)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Commit at a clean exit (with autocommit), roll back otherwise.

        Raises:
            RollbackOnlyError: a joined unit of work failed and its exception was
                swallowed, so the work was rolled back.

        Example:
            ```python
            async with uow:
                await uow.users.create(email="ann@example.com", name="Ann")
            assert uow.committed
            ```
        """
        if not self._active:
            return
        try:
            if self._owner is not None:
                if exc is not None:
                    self._owner._rollback_only = True
                    self.rolled_back = True
            elif exc is not None:
                await self.rollback()
            elif self._rollback_only:
                error = self._rollback_only_error()
                await self.rollback()
                raise error
            elif self.autocommit:
                await self.commit()
            elif self._changed():
                await self.rollback()
        finally:
            if self._owner is None:
                for repo, _ in self._claimed.values():
                    repo._unit_of_work = None  # pyright: ignore[reportPrivateUsage]
                self._claimed = {}
            self._active = False
            self._owner = None
            for name in self._repositories:
                if name in vars(self):
                    delattr(self, name)

    def _mark_rollback_only(self, cause: BaseException | None) -> None:
        """Doom the work (of the owner, when joined): it can only roll back now.

        A `ConflictError` of an in-memory repository calls this, as a database error
        inside a transaction makes it rollback-only under `TransactionManager`.
        """
        target = self._owner or self
        if not target._rollback_only:
            target._rollback_only = True
            target._rollback_cause = cause

    def _rollback_only_error(self) -> RollbackOnlyError:
        cause = self._rollback_cause
        why = (
            f"a {type(cause).__name__} inside it ({cause})"
            if cause is not None
            else "a joined unit of work failed and"
        )
        error = RollbackOnlyError(
            f"{type(self).__name__}: {why} marked the work rollback-only, so it was rolled "
            "back instead of committed; to go on after a conflict, catch it outside the "
            "unit of work"
        )
        error.__cause__ = cause
        return error

    def _require_active(self, action: str) -> None:
        if not self._active:
            raise TransactionRequiredError(
                f"{type(self).__name__}.{action}() needs an active unit of work; call it "
                "inside `async with uow:`"
            )

    async def commit(self) -> None:
        """Make the work so far permanent: a later rollback returns to this point.

        Joined to an outer unit of work, this leaves the commit to the outer one.

        Raises:
            TransactionRequiredError: outside ``async with``.
            RollbackOnlyError: a joined unit of work failed; the work was rolled back.

        Example:
            ```python
            async with FakeUnitOfWork(users=users, autocommit=False) as uow:
                await uow.users.create(email="ann@example.com", name="Ann")
                await uow.commit()
            ```
        """
        self._require_active("commit")
        if self._owner is not None:
            return
        if self._rollback_only:
            error = self._rollback_only_error()
            await self.rollback()
            raise error
        self._take_snapshots()
        self.committed = True

    async def rollback(self) -> None:
        """Undo the work since the last commit (or since entry); the unit of work goes on.

        Joined to an outer unit of work, this marks the work rollback-only.

        Raises:
            TransactionRequiredError: outside ``async with``.

        Example:
            ```python
            async with uow:
                await uow.users.create(email="ann@example.com", name="Ann")
                await uow.rollback()
                assert await uow.users.count() == 0
            ```
        """
        self._require_active("rollback")
        self.rolled_back = True
        if self._owner is not None:
            self._owner._rollback_only = True
            return
        for repo, saved in self._claimed.values():
            repo._restore(saved)  # pyright: ignore[reportPrivateUsage]
        self._rollback_only = False
        self._rollback_cause = None
