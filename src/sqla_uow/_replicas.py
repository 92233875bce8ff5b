"""Routing of read-only transactions to read replicas, with read-your-writes.

The transaction manager asks a `ReplicaRouter` for a replica when a transaction begins
read-only. The router picks the next usable replica in turn and, once the transaction
has begun there, checks that the replica is fresh enough for this context:

- **Read-your-writes.** After a context (an asyncio task, and the tasks it creates
  afterwards) commits a read-write transaction, its later read-only transactions must
  see that commit. On PostgreSQL the router remembers the primary's WAL position right
  after the COMMIT (``pg_current_wal_lsn()``) and uses a replica only once it has
  replayed past it (``pg_last_wal_replay_lsn()``); each replica's last known replay
  position is cached, so a replica known to be past it costs no query. On backends
  without WAL positions the context's reads go to the primary for
  ``read_your_writes_window`` seconds after its commit.
- **Lag.** With ``max_lag`` set, a replica whose replay is more than ``max_lag`` seconds
  behind (checked at most every ``check_interval`` seconds) is skipped for the
  cool-down.
- **Failures.** A replica that refuses connections or fails to begin is skipped for
  ``cooldown`` seconds and the transaction runs on the primary: the caller sees no
  error. A warning is logged on the ``sqla_uow`` logger once per change of state.

With every replica skipped, read-only transactions run on the primary.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ._dialects import backend_for

logger = logging.getLogger("sqla_uow")

__all__ = ["Replica", "ReplicaRouter", "is_connection_failure"]

_WROTE_KEY = "sqla_uow_wrote"
_WATCHED: weakref.WeakSet[Engine] = weakref.WeakSet()
"""The primary engines whose statements are watched for writes."""
_READ_STATEMENT = re.compile(r"\s*(select|show|values)\b", re.IGNORECASE)


def _note_write(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    """Mark the connection as having written (any statement but a plain read)."""
    if context is None:
        return
    if (
        context.isinsert
        or context.isupdate
        or context.isdelete
        or context.isddl
        or (context.is_text and not _READ_STATEMENT.match(statement))
    ):
        conn.info[_WROTE_KEY] = True


def is_connection_failure(error: BaseException) -> bool:
    """Whether *error*, raised while beginning on a replica, means the replica is unusable."""
    if isinstance(error, (OSError, TimeoutError, sa_exc.TimeoutError)):
        return True  # refused, unreachable, or its pool had no connection to spare
    if isinstance(error, sa_exc.DBAPIError):
        return error.connection_invalidated or isinstance(
            error, (sa_exc.OperationalError, sa_exc.InterfaceError)
        )
    return False


@dataclass(frozen=True)
class _Write:
    """The last commit of a context: when, and the primary's WAL position after it."""

    at: float
    lsn: int | None


@dataclass(eq=False)
class Replica:
    """One read replica: its engine, session factory and health."""

    name: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    skipped_until: float = 0.0
    reason: str | None = None
    """Why the replica is skipped (None while it is in use)."""
    replayed: int = -1
    """The highest WAL position the replica was seen to have replayed (PostgreSQL)."""
    checked_at: float = float("-inf")
    """When the replica's lag was last measured."""

    def __repr__(self) -> str:
        return f"Replica({self.name!r})"


class ReplicaRouter:
    """Chooses replicas for read-only transactions; tracks their health and the writes."""

    def __init__(
        self,
        primary: AsyncEngine,
        replicas: Sequence[str | URL | AsyncEngine],
        *,
        engine_options: dict[str, Any],
        max_lag: float | None,
        cooldown: float,
        read_your_writes_window: float,
        check_interval: float,
    ) -> None:
        if max_lag is not None and max_lag < 0:
            raise ValueError(f"max_lag must be a number of seconds >= 0 or None, got {max_lag!r}")
        if cooldown < 0 or read_your_writes_window < 0 or check_interval < 0:
            raise ValueError(
                "replica_cooldown, read_your_writes_window and check_interval must be >= 0"
            )
        self._primary = primary
        self._backend = backend_for(primary.sync_engine.dialect)
        self._lsn = self._backend.wal_positions
        self.replicas: list[Replica] = []
        for index, replica in enumerate(replicas):
            if isinstance(replica, AsyncEngine):
                engine = replica
            elif isinstance(replica, (str, URL)):  # pyright: ignore[reportUnnecessaryIsInstance]
                # A pooled connection to a replica that went away fails its ping at
                # checkout, inside the manager's begin, which then uses the primary.
                engine = create_async_engine(replica, **{"pool_pre_ping": True, **engine_options})
            else:
                raise TypeError(
                    "replicas takes URLs (str or sqlalchemy.URL) or AsyncEngines, "
                    f"not {type(replica).__name__}"
                )
            backend = backend_for(engine.sync_engine.dialect)
            if type(backend) is not type(self._backend):
                raise ValueError(
                    f"replica {index} is {backend.name}, the primary is {self._backend.name}: "
                    "replicas must be of the primary's database"
                )
            url = engine.url
            if url.host:
                name = f"{url.host}:{url.port}" if url.port else url.host
            else:
                name = str(url.database)
            if any(r.name == name for r in self.replicas):
                name = f"{name}#{index}"
            maker = async_sessionmaker(engine, expire_on_commit=False)
            self.replicas.append(Replica(name, engine, maker))
        self._max_lag = max_lag
        self._cooldown = cooldown
        self._window = read_your_writes_window
        self._check_interval = check_interval
        self._next = 0
        if primary.sync_engine not in _WATCHED:  # not event.contains(): it keys by id()
            _WATCHED.add(primary.sync_engine)
            event.listen(primary.sync_engine, "after_cursor_execute", _note_write)
        self._write: contextvars.ContextVar[_Write | None] = contextvars.ContextVar(
            f"sqla_uow_last_write_{id(self):x}", default=None
        )

    @property
    def engines(self) -> list[AsyncEngine]:
        """The replicas' engines."""
        return [replica.engine for replica in self.replicas]

    async def dispose(self) -> None:
        """Close the pooled connections of every replica engine."""
        for replica in self.replicas:
            await replica.engine.dispose()

    # -- choosing

    def choose(self) -> Replica | None:
        """The next replica in turn that is not skipped, or None for the primary."""
        write = self._write.get()
        now = time.monotonic()
        if write is not None and write.lsn is None and now - write.at < self._window:
            return None
        count = len(self.replicas)
        for step in range(count):
            replica = self.replicas[(self._next + step) % count]
            if replica.skipped_until <= now:
                if replica.reason is not None:
                    was = replica.reason
                    logger.warning("replica %s is used again (before: %s)", replica.name, was)
                    replica.reason = None
                self._next = (self._next + step + 1) % count
                return replica
        return None

    def skip(self, replica: Replica, reason: str) -> None:
        """Leave *replica* out for the cool-down; warn when its state changes."""
        replica.skipped_until = time.monotonic() + self._cooldown
        if replica.reason is None:
            logger.warning(
                "replica %s is skipped for %.1f s, its reads go to the primary: %s",
                replica.name,
                self._cooldown,
                reason,
            )
        replica.reason = reason

    async def fresh_enough(self, replica: Replica, connection: AsyncConnection) -> bool:
        """Whether the transaction begun on *replica* may serve this context's reads.

        Runs one query on the replica when a check is due: this context wrote since the
        replica was last seen past the write, or the lag is due to be measured.
        """
        if not self._lsn:
            return True
        write = self._write.get()
        needed = write.lsn if write is not None else None
        now = time.monotonic()
        lag_due = self._max_lag is not None and now - replica.checked_at >= self._check_interval
        if not lag_due and (needed is None or replica.replayed >= needed):
            return True
        replayed, lag = await self._backend.replica_position(connection)
        if replayed is None:  # not a standby: it serves what it has committed
            return True
        replica.replayed = max(replica.replayed, replayed)
        if lag_due:
            replica.checked_at = now
            if self._max_lag is not None and lag is not None and float(lag) > self._max_lag:
                self.skip(replica, f"replay is {float(lag):.1f} s behind (max_lag={self._max_lag})")
                return False
        return needed is None or replica.replayed >= needed

    # -- writes

    @staticmethod
    def begin_watch(connection: AsyncConnection) -> None:
        """Start watching a transaction on the primary for writes."""
        connection.info.pop(_WROTE_KEY, None)

    @staticmethod
    def wrote(connection: AsyncConnection) -> bool:
        """Whether the transaction on *connection* has written since `begin_watch`."""
        return bool(connection.info.pop(_WROTE_KEY, False))

    async def note_commit(self) -> None:
        """Remember that this context committed a write just now.

        Never raises: the commit has happened. Without a WAL position (another backend,
        or the primary did not answer) the context reads from the primary for the
        read-your-writes window.
        """
        lsn: int | None = None
        if self._lsn:
            try:
                async with self._primary.connect() as conn:
                    autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    lsn = await self._backend.primary_position(autocommit)
            except Exception:
                logger.warning(
                    "could not read the primary's WAL position after a commit; this "
                    "context reads from the primary for %.1f s",
                    self._window,
                    exc_info=True,
                )
        self._write.set(_Write(time.monotonic(), lsn))
