"""Helpers for the notifications unit tests: StateChanged builders and a runtime stand-in for sweeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from system.domain.lifecycle import State
from system.messaging.db import begin_immediate, open_db
from system.notifications import store
from system.platform.contracts import Contact, Driver, StateChanged, state_message_id

AT = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)


def change(
    state: State,
    previous: State | None,
    *,
    delivery: str = "dlv_1",
    phone: str | None = "+447700900786",
    email: str | None = "ben@example.com",
    driver: str | None = None,
    **extra: Any,
) -> StateChanged:
    """A StateChanged as tracking would send it."""
    return StateChanged(
        message_id=state_message_id(delivery, state),
        delivery_id=delivery,
        order_reference="s42-0000001",
        state=state,
        previous=previous,
        at=AT,
        recipient=Contact(name="Ben", phone=phone, email=email),
        driver=Driver(id=driver, vehicle="bike") if driver else None,
        store_name="229 Richmond Road",
        **extra,
    )


async def open_store(path: Path) -> aiosqlite.Connection:
    """A notifications DB with its schema."""
    db = await open_db(path)
    await db.executescript(store.SCHEMA)
    return db


class FakeRuntime:
    """What a sweep uses of ServiceRuntime: ``transaction()`` and ``reading()`` on one connection,
    serialised like the runtime's own."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await begin_immediate(self.db)
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            yield self.db


async def rows(db: aiosqlite.Connection) -> dict[str, dict[str, Any]]:
    """Every notification row by id."""
    db.row_factory = aiosqlite.Row
    try:
        cursor = await db.execute("SELECT * FROM notifications")
        found = {r["notification_id"]: dict(r) for r in await cursor.fetchall()}
        await cursor.close()
    finally:
        db.row_factory = None
    return found
