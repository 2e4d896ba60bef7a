"""Helpers shared by the messaging unit tests."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


def run_closing(coro: Any) -> None:
    """asyncio.run that also closes SQLite connections left open by a failed assertion (their threads
    would otherwise keep the test process alive)."""
    import aiosqlite as _a

    opened: list[_a.Connection] = []
    original = _a.Connection.__await__

    async def scenario_with_cleanup() -> None:
        try:
            await coro
        finally:
            for conn in opened:
                with contextlib.suppress(Exception):
                    await conn.close()

    def tracking_await(self: _a.Connection) -> Any:
        opened.append(self)
        return original(self)

    _a.Connection.__await__ = tracking_await  # type: ignore[method-assign]
    try:
        asyncio.run(scenario_with_cleanup())
    finally:
        _a.Connection.__await__ = original  # type: ignore[method-assign]
