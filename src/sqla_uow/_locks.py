"""Row locks: `ForUpdate`, the ``for_update=`` option of the reads, checked and applied."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql import Select

from .exceptions import InvalidFieldError

if TYPE_CHECKING:
    from ._dialects import Backend

__all__ = ["ForUpdate", "LockTarget", "lock_arguments", "lock_request", "with_lock"]

LockTarget = type[Any] | QueryableAttribute[Any]
"""What ``ForUpdate(of=...)`` names: the queried model or one of its column attributes."""

_S = TypeVar("_S", bound=Select[Any])


@dataclass(frozen=True, kw_only=True)
class ForUpdate:
    """How a read locks the rows it selects (``SELECT ... FOR UPDATE`` and its options).

    Pass it as ``for_update=`` to `AsyncRepository.get`, ``get_one``, ``find_one``,
    ``list``, ``stream`` and ``stream_chunks``; ``for_update=True`` is ``ForUpdate()``.
    The locks last until the transaction ends.

    Databases: PostgreSQL takes every option. MariaDB / MySQL take ``nowait`` and
    ``skip_locked``; ``of`` and ``key_share`` raise `UnsupportedDialectError` there
    (MariaDB has no ``FOR UPDATE OF`` and no ``FOR NO KEY UPDATE``). SQLite has no
    row locks and needs none: a read-write transaction of `TransactionManager` on
    SQLite holds the database's write lock from its ``BEGIN IMMEDIATE`` on, so no other
    writer can change a row it read until it ends; the options are checked and
    otherwise ignored there.

    Attributes:
        nowait: Do not wait for a row another transaction locked: raise
            `LockNotAvailableError` at once (``FOR UPDATE NOWAIT``).
        skip_locked: Leave out the rows other transactions locked (``FOR UPDATE SKIP
            LOCKED``), as for a queue of jobs that several workers take from.
        of: Lock only the rows of these tables (``FOR UPDATE OF``): the queried model,
            or one of its column attributes (which names its table), or a sequence of
            them. Rows of eagerly joined relationships are then not locked.
        key_share: Take the weaker lock PostgreSQL calls ``FOR NO KEY UPDATE``: enough
            to update columns other than keys, and it does not block inserts of rows
            whose foreign keys reference the locked row (PostgreSQL only).

    Raises:
        InvalidFieldError: ``nowait`` and ``skip_locked`` both set (a locked row can
            either fail the read or be skipped), or an option that is not a bool.

    Example:
        ```python
        job = await jobs.find_one(
            status="queued", for_update=ForUpdate(skip_locked=True)
        )
        account = await accounts.get_one(7, for_update=ForUpdate(nowait=True))
        ```
    """

    nowait: bool = False
    skip_locked: bool = False
    of: LockTarget | Sequence[LockTarget] | None = None
    key_share: bool = False

    def __post_init__(self) -> None:
        for name in ("nowait", "skip_locked", "key_share"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise InvalidFieldError(
                    f"ForUpdate({name}=...) must be True or False, not {value!r}", field=name
                )
        if self.nowait and self.skip_locked:
            raise InvalidFieldError(
                "ForUpdate(nowait=True, skip_locked=True): choose one; nowait fails the "
                "read when a row is locked, skip_locked leaves locked rows out",
                field="skip_locked",
                choices=("nowait", "skip_locked"),
            )


def lock_request(for_update: bool | ForUpdate, model: type[Any]) -> dict[str, Any] | None:
    """*for_update* checked as ``with_for_update()`` keyword arguments for a read of *model*.

    ``None``: no lock (``False``). Needs no database: the fakes of `sqla_uow.testing`
    check the option with it too.

    Raises:
        InvalidFieldError: *for_update* is neither a bool nor a `ForUpdate`, or ``of``
            names something other than *model* and its column attributes.
    """
    if for_update is False:
        return None
    if for_update is True:
        return {}
    if not isinstance(for_update, ForUpdate):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidFieldError(
            f"for_update must be True, False or a ForUpdate(...), not {for_update!r}",
            model=model,
            field="for_update",
        )
    arguments: dict[str, Any] = {}
    if for_update.nowait:
        arguments["nowait"] = True
    if for_update.skip_locked:
        arguments["skip_locked"] = True
    if for_update.key_share:
        arguments["key_share"] = True
    if for_update.of is not None:
        arguments["of"] = _lock_targets(for_update.of, model)
    return arguments


def lock_arguments(
    for_update: bool | ForUpdate, model: type[Any], backend: Backend
) -> dict[str, Any] | None:
    """The ``with_for_update()`` keyword arguments of *for_update* on *backend*'s database.

    ``None``: no lock (``False``, or a database without row locks, where the option is
    checked all the same).

    Raises:
        InvalidFieldError: See `lock_request`.
        UnsupportedDialectError: An option the database does not have.
    """
    arguments = lock_request(for_update, model)
    if arguments is None or not backend.row_locks:
        return None
    backend.check_lock_options(arguments)
    return arguments


def with_lock(
    statement: _S, for_update: bool | ForUpdate, model: type[Any], backend: Backend
) -> _S:
    """*statement* (a ``SELECT`` of *model*) with the row lock *for_update* asks for."""
    if for_update is False:
        return statement
    arguments = lock_arguments(for_update, model, backend)
    if arguments is None:
        return statement
    return statement.with_for_update(**arguments)


def _lock_targets(of: LockTarget | Sequence[LockTarget], model: type[Any]) -> list[Any]:
    items: Sequence[Any] = (
        of if isinstance(of, Sequence) and not isinstance(of, str) else [of]  # pyright: ignore[reportUnnecessaryIsInstance]
    )
    if not items:
        raise InvalidFieldError(
            "ForUpdate(of=...) is empty; name the model or its columns, or leave it None",
            model=model,
            field="of",
        )
    for item in items:
        if item is model:
            continue
        if isinstance(item, QueryableAttribute):
            owner = getattr(cast(Any, item), "class_", None)
            if isinstance(owner, type) and issubclass(model, owner):
                continue
        raise InvalidFieldError(
            f"ForUpdate(of={item!r}) is not {model.__name__} or one of its column "
            f"attributes; a read of {model.__name__} locks rows of its own table",
            model=model,
            field="of",
        )
    return list(items)
