"""``open_db``: the switch to WAL waits out another process holding the fresh file, and a failed open
does not leave aiosqlite's (non-daemon) thread behind to keep a crashed process alive."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from system.messaging import db as db_module
from system.messaging.db import open_db


class _Contended:
    """A connection whose switch to WAL is refused ``refusals`` times, as SQLite does at once (without
    its busy timeout) when another process is switching or writing the same fresh file."""

    def __init__(self, refusals: int, error: str = "database is locked") -> None:
        self.refusals, self.error, self.calls = refusals, error, 0

    async def execute(self, sql: str) -> None:
        self.calls += 1
        if self.calls <= self.refusals:
            raise sqlite3.OperationalError(self.error)


def test_the_switch_to_wal_is_retried_while_the_file_is_locked() -> None:
    conn = _Contended(refusals=3)
    asyncio.run(db_module._switch_to_wal(conn))  # type: ignore[arg-type]
    assert conn.calls == 4


def test_other_errors_and_a_lock_that_never_ends_are_raised() -> None:
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        asyncio.run(db_module._switch_to_wal(_Contended(1, "disk I/O error")))  # type: ignore[arg-type]
    never = _Contended(refusals=10)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        asyncio.run(
            db_module.while_locked(
                lambda: never.execute("PRAGMA journal_mode=WAL"),
                tries=5,
                first_pause_s=0.001,
                max_pause_s=0.01,
            )
        )
    assert never.calls == 5


def test_a_failed_open_closes_its_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(db: object, **_: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(db_module, "_switch_to_wal", refuse)
    before = set(threading.enumerate())
    with pytest.raises(sqlite3.OperationalError):
        asyncio.run(open_db(tmp_path / "x.db"))
    for t in set(threading.enumerate()) - before:
        t.join(timeout=5)  # a closed connection's thread ends; an open one waits for work forever
        assert not t.is_alive(), f"the connection's thread {t.name} outlived the failed open"
