"""Where notifications go: the provider interface, the HTTP provider and a recording stand-in.

:class:`HttpProvider` posts each notification to ``{notify_url}/v1/notifications``
(docs/intake-api.md §4) and classifies the answer (:func:`classify`):

=====================================  ===============  ==========================================
answer                                 outcome          why
=====================================  ===============  ==========================================
2xx (202 received, 200 duplicate)      :class:`Sent`    the provider has it
429, 408, 5xx                          retry later      load or a provider fault: it may work later
timeout, refused, reset connection     retry later      outcome unknown: same id again is safe
other 4xx, 3xx, 1xx                    :class:`Refused` retrying the same body cannot help: the row is
                                                        marked failed with the reason, logged as an
                                                        error, never dropped silently
=====================================  ===============  ==========================================

:class:`RecordingProvider` is the simulated provider used when no ``notify_url`` is set: it records
every send in its own SQLite file with a count per ``notification_id``, so duplicates can be counted.

Example:
    >>> classify(202, '{"status": "received"}', None)
    Sent(answer='202 {"status": "received"}')
    >>> classify(503, "", "2")
    RetryLater(reason='HTTP 503', retry_after_s=2.0)
    >>> classify(400, '{"error": "bad phone"}', None)
    Refused(reason='HTTP 400: {"error": "bad phone"}')
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
import aiosqlite

from system.messaging.db import begin_immediate, open_db

NOTIFY_PATH = "/v1/notifications"

#: 4xx answers that mean "not now" rather than "never".
RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True)
class Sent:
    """The provider accepted the notification."""

    answer: str


@dataclass(frozen=True)
class RetryLater:
    """It may work later (load, provider fault, unknown outcome); the same notification_id is resent."""

    reason: str
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Refused:
    """A permanent refusal: sending the same body again cannot succeed."""

    reason: str


SendOutcome = Sent | RetryLater | Refused


class Provider(Protocol):
    """Something that delivers one notification (its docs/intake-api.md §4 body) and says how it went."""

    async def send(self, body: Mapping[str, str]) -> SendOutcome:
        """Deliver ``body``; transport errors are answered as :class:`RetryLater`, never raised."""

    async def close(self) -> None:
        """Release connections and files."""


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (the HTTP-date form is ignored: None)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def classify(status: int, text: str, retry_after: str | None) -> SendOutcome:
    """The outcome of one HTTP answer (the table in the module docstring)."""
    excerpt = " ".join(text.split())[:300]
    if 200 <= status < 300:
        return Sent(f"{status} {excerpt}".strip())
    if status in RETRYABLE_4XX or 500 <= status < 600:
        return RetryLater(f"HTTP {status}", parse_retry_after(retry_after))
    return Refused(f"HTTP {status}: {excerpt}" if excerpt else f"HTTP {status}")


class HttpProvider:
    """POSTs to ``{notify_url}/v1/notifications`` with a deadline per request."""

    def __init__(self, notify_url: str, timeout_s: float = 5.0) -> None:
        self.url = notify_url.rstrip("/") + NOTIFY_PATH
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, body: Mapping[str, str]) -> SendOutcome:
        """POST ``body``; see :func:`classify` for the answers, and a lost connection is a retry."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self.url, json=dict(body), allow_redirects=False) as resp:
                text = await resp.text(errors="replace")
                return classify(resp.status, text, resp.headers.get("Retry-After"))
        except TimeoutError:
            return RetryLater(f"timeout after {self._timeout.total} s")
        except aiohttp.ClientError as exc:  # refused, reset, DNS: the outcome is unknown, try again
            return RetryLater(f"connection: {exc!r}"[:300])

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


PROVIDER_SCHEMA = """
CREATE TABLE IF NOT EXISTS provider_sends (
    notification_id TEXT PRIMARY KEY,
    count           INTEGER NOT NULL,
    first_at        REAL NOT NULL,
    last_at         REAL NOT NULL,
    body            TEXT NOT NULL
) WITHOUT ROWID;
"""


class RecordingProvider:
    """The simulated provider: each send is counted per ``notification_id`` in its own SQLite file
    (shared by the replicas), so a test or an audit can tell re-sends (count > 1) from notifications."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> aiosqlite.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = await open_db(self.path)
            await db.executescript(PROVIDER_SCHEMA)
            self._db = db
        return self._db

    async def send(self, body: Mapping[str, str]) -> SendOutcome:
        """Record the send (count + 1 for this notification_id) and accept it."""
        notification_id = body.get("notification_id")
        if not notification_id:
            return Refused("no notification_id")
        now = time.time()
        async with self._lock:
            db = await self._open()
            await begin_immediate(db)
            try:
                await db.execute(
                    "INSERT INTO provider_sends (notification_id, count, first_at, last_at, body)"
                    " VALUES (?, 1, ?, ?, ?) ON CONFLICT (notification_id)"
                    " DO UPDATE SET count = count + 1, last_at = excluded.last_at",
                    (notification_id, now, now, json.dumps(dict(body), separators=(",", ":"))),
                )
                cursor = await db.execute(
                    "SELECT count FROM provider_sends WHERE notification_id = ?", (notification_id,)
                )
                row = await cursor.fetchone()
                await cursor.close()
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")
        count = int(row[0]) if row else 1
        return Sent("recorded" if count == 1 else f"recorded (duplicate, sent {count} times)")

    async def counts(self) -> dict[str, int]:
        """Sends per notification_id so far."""
        async with self._lock:
            db = await self._open()
            cursor = await db.execute("SELECT notification_id, count FROM provider_sends")
            rows = await cursor.fetchall()
            await cursor.close()
        return {str(r[0]): int(r[1]) for r in rows}

    async def close(self) -> None:
        """Close the provider's file."""
        if self._db is not None:
            await self._db.close()
            self._db = None


def provider_for(notify_url: str | None, recording_path: Path, timeout_s: float) -> Provider:
    """The HTTP provider when a ``notify_url`` is set, else the recording one."""
    if notify_url:
        return HttpProvider(notify_url, timeout_s)
    return RecordingProvider(recording_path)
