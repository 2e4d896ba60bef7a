"""SQLite connections for the outbox and the inbox: WAL, explicit transactions."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite


async def open_db(path: str | Path, *, synchronous: str = "NORMAL") -> aiosqlite.Connection:
    """Open ``path`` in WAL mode with explicit transactions (``BEGIN``/``COMMIT`` are ours).

    ``synchronous=NORMAL`` in WAL mode: a committed transaction survives SIGKILL of the process (it is
    in the OS page cache) but may be lost on power loss; pass ``FULL`` to fsync every commit.
    """
    db = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        # Relay and service write the same file from two connections: wait for the lock, don't fail.
        # First of all: replicas started together switch the same fresh file to WAL at once.
        await db.execute("PRAGMA busy_timeout=10000")
        await _switch_to_wal(db)
        await db.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException:
        # aiosqlite's thread is not a daemon: an unclosed connection keeps a crashed process alive,
        # and a supervisor never restarts a process that has not exited (seen: a consumer "never ready").
        with contextlib.suppress(Exception):
            await db.close()
        raise
    return db


async def _switch_to_wal(db: aiosqlite.Connection) -> None:
    """``journal_mode=WAL``, retried while another connection holds the file.

    The switch needs the file to itself; when two processes open a fresh file together SQLite answers
    "database is locked" at once, without waiting for ``busy_timeout`` (CI: one of two consumers started
    together died that way).
    """
    await while_locked(
        lambda: _execute(db, "PRAGMA journal_mode=WAL"), tries=100, first_pause_s=0.01, max_pause_s=0.2
    )


async def _execute(db: aiosqlite.Connection, sql: str) -> None:
    await db.execute(sql)


async def while_locked(
    action: Callable[[], Awaitable[None]], *, tries: int, first_pause_s: float, max_pause_s: float
) -> None:
    """Run ``action()``, again after a doubling pause (``first_pause_s`` up to ``max_pause_s``) while
    SQLite answers "locked"/"busy" at once instead of waiting for ``busy_timeout``; the last try's error
    is raised, as is any other error at once."""
    for attempt in range(tries):
        try:
            await action()
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == tries - 1:
                raise
            await asyncio.sleep(min(first_pause_s * 2**attempt, max_pause_s))


async def begin_immediate(db: aiosqlite.Connection, *, attempts: int = 200) -> None:
    """``BEGIN IMMEDIATE``, retried while another connection holds the write lock.

    Observed here: with two connections writing the same WAL file SQLite sometimes answers
    "database is locked" at once instead of waiting for ``busy_timeout``, so we wait ourselves.
    """
    # attempts + 1 tries: ``attempts`` pauses, then a last try whose error is raised.
    await while_locked(
        lambda: _execute(db, "BEGIN IMMEDIATE"), tries=attempts + 1, first_pause_s=0.001, max_pause_s=0.05
    )


@asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` when the body raises."""
    await begin_immediate(db)
    try:
        yield db
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")
