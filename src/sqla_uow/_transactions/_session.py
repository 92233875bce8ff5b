"""Session lifecycle: flush, commit, rollback and discard, shielded from cancellation.

A rollback expires every object of the session; the objects the transaction left
unchanged get their loaded values back (`rollback`), so what was only read stays
readable after the transaction ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.attributes import set_committed_value

from sqla_uow._compat import flushed_states, session_is_clean
from sqla_uow._errors import database_errors

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import InstanceState, Session

    from ._propagation import Tx

__all__ = ["commit", "discard", "flush_session", "is_outcome_unknown", "rollback", "shielded"]

logger = logging.getLogger("sqla_uow")

_T = TypeVar("_T")


async def shielded(awaitable: Awaitable[_T]) -> _T:
    """Run *awaitable* to completion even if the calling task is cancelled meanwhile.

    A cancellation that arrives while it runs is held back and re-raised once it is
    done, so clean-up (rollback, close) always finishes and connections go back to the
    pool before the `asyncio.CancelledError` travels on.
    """
    task = asyncio.ensure_future(awaitable)
    interrupted: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if not task.done():
                interrupted = exc
                continue
            if interrupted is None:
                raise
            break
        except BaseException:
            if interrupted is None:
                raise
            break
        else:
            if interrupted is None:
                return result
            break
    if not task.cancelled():
        task.exception()  # mark it retrieved; the cancellation wins
    raise interrupted


def is_outcome_unknown(exc: BaseException) -> bool:
    """Whether a failed COMMIT may nevertheless have been applied by the database."""
    if not isinstance(exc, Exception) or isinstance(exc, asyncio.TimeoutError):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


async def flush_session(session: AsyncSession) -> None:
    """Flush *session*; an integrity violation surfaces as `ConflictError`.

    A session with nothing to flush costs no trip through a greenlet.
    """
    if session_is_clean(session.sync_session):
        return
    with database_errors():
        await session.flush()


_Snapshot = list[tuple["InstanceState[Any]", dict[str, Any]]]


def _unchanged_objects(sync_session: Session) -> _Snapshot:
    """The loaded values of the session's objects that the transaction left unchanged.

    An object is unchanged when it has no pending change and no change of it was
    flushed in the transaction (or in a savepoint inside it). A rollback expires
    every object; `_restore_unchanged` puts these values back, so objects that were
    only read stay readable, while new objects of the rolled-back work become
    transient and changed ones stay expired.
    """
    flushed = flushed_states(sync_session)
    snapshot: _Snapshot = []
    for state in sync_session.identity_map.all_states():
        if state.modified or state in flushed or state.deleted:
            continue
        keys = state.mapper.attrs.keys()
        snapshot.append((state, {key: state.dict[key] for key in keys if key in state.dict}))
    return snapshot


def _restore_unchanged(snapshot: _Snapshot) -> None:
    for state, values in snapshot:
        obj = state.obj()
        if obj is None:
            continue
        for key, value in values.items():
            set_committed_value(obj, key, value)


async def rollback(session: AsyncSession) -> None:
    """Roll back *session*; objects the transaction left unchanged keep their values."""
    snapshot = _unchanged_objects(session.sync_session)
    await session.rollback()
    _restore_unchanged(snapshot)


async def discard(session: AsyncSession, *, invalidate: bool) -> None:
    """Roll back and close *session*; invalidate its connection if that fails or is asked.

    Objects the transaction left unchanged stay readable (detached, with their values);
    new objects of the discarded work become transient, changed ones stay expired.
    """
    interrupted: BaseException | None = None
    if not invalidate:
        try:
            await rollback(session)
        except Exception:
            logger.debug("rollback failed; invalidating the connection", exc_info=True)
            invalidate = True
        except BaseException as exc:  # cancelled itself: do not return a busy connection
            interrupted = exc
            invalidate = True
    try:
        if invalidate:
            try:
                await session.invalidate()
            except Exception:
                logger.debug("invalidating the connection failed", exc_info=True)
        else:
            await session.close()
    finally:
        if interrupted is not None:
            raise interrupted


async def commit(tx: Tx) -> None:
    """Flush and COMMIT; on failure, roll back (or invalidate) and close the session."""
    session = tx.session
    try:
        await flush_session(session)
    except BaseException:
        await shielded(discard(session, invalidate=False))
        raise
    router = tx.router
    wrote = router is not None and tx.replica is None and router.wrote(tx.connection)
    try:
        await session.commit()
    except BaseException as error:
        await shielded(discard(session, invalidate=is_outcome_unknown(error)))
        with database_errors():  # a deferred constraint fails at COMMIT
            raise
    if wrote and router is not None:
        await router.note_commit()
