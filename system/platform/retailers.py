"""Who may submit orders: the retailers file, loaded and reloaded, with API keys indexed by hash.

The file (docs/intake-api.md §1) lives outside the repository; its path comes from the settings. It is
parsed with :func:`system.domain.retailers.parse_retailers` and reloaded when its modification time
changes (the simulator may write it after the platform started, and new clients may be added).

Secrets: REST API keys are indexed by their SHA-256, and a presented key is hashed before the lookup,
so the plaintext keys are not kept in any index (the parsed :class:`Retailer` objects still hold them:
never log one). Webhook secrets are HMAC keys and must stay usable as they are. Nothing in this module
logs a secret: log lines name the file and the retailer ids only.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from pathlib import Path

from system.domain.retailers import Retailer, RetailersError, parse_retailers
from system.logs import get_logger

log = get_logger(__name__)


def key_digest(api_key: str) -> bytes:
    """SHA-256 of an API key: what the index holds and what a presented key is compared with."""
    return hashlib.sha256(api_key.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True)
class _Snapshot:
    mtime_ns: int
    by_key_digest: dict[bytes, Retailer]
    by_shop: dict[str, Retailer]
    by_merchant: dict[str, Retailer]
    by_id: dict[str, Retailer]


class RetailersUnavailable(Exception):
    """The retailers file is missing or invalid and no earlier version was loaded (HTTP 503)."""


class RetailerRegistry:
    """The retailers of one intake process, reloaded from ``path`` when the file changes."""

    def __init__(self, path: Path, reload_every_s: float = 1.0) -> None:
        self._path = path
        self._reload_every_s = reload_every_s
        self._snapshot: _Snapshot | None = None
        self._checked_at = float("-inf")
        self._error: str | None = None

    @property
    def loaded(self) -> bool:
        """Whether some version of the file is loaded."""
        self._maybe_reload()
        return self._snapshot is not None

    @property
    def error(self) -> str | None:
        """Why the last load failed (None when it succeeded)."""
        return self._error

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if self._snapshot is not None and now - self._checked_at < self._reload_every_s:
            return
        self._checked_at = now
        try:
            mtime = self._path.stat().st_mtime_ns
        except OSError as exc:
            self._fail(f"{self._path}: {exc.strerror or exc}")
            return
        if self._snapshot is not None and self._snapshot.mtime_ns == mtime:
            return
        try:
            book = parse_retailers(self._path.read_bytes(), source=str(self._path))
        except (OSError, RetailersError) as exc:
            # Keep serving with the last good version: a half-written file must not lock retailers out.
            self._fail(str(exc))
            return
        self._snapshot = _Snapshot(
            mtime_ns=mtime,
            by_key_digest={key_digest(r.api_key): r for r in book.retailers},
            by_shop={r.shop_domain: r for r in book.retailers},
            by_merchant={r.merchant_id: r for r in book.retailers},
            by_id={r.id: r for r in book.retailers},
        )
        self._error = None
        log.info(
            "retailers loaded",
            extra={"file": str(self._path), "retailers": sorted(self._snapshot.by_id)},
        )

    def _fail(self, why: str) -> None:
        if why != self._error:
            log.error("retailers file unusable", extra={"file": str(self._path), "error": why})
        self._error = why

    def _current(self) -> _Snapshot:
        self._maybe_reload()
        if self._snapshot is None:
            raise RetailersUnavailable(self._error or "retailers not loaded")
        return self._snapshot

    def by_api_key(self, api_key: str) -> Retailer | None:
        """The retailer owning ``api_key`` (None: 401). Looked up by digest, confirmed in constant time."""
        digest = key_digest(api_key)
        retailer = self._current().by_key_digest.get(digest)
        if retailer is None or not hmac.compare_digest(key_digest(retailer.api_key), digest):
            return None
        return retailer

    def by_shop_domain(self, domain: str) -> Retailer | None:
        """The retailer of a Shopify shop domain."""
        return self._current().by_shop.get(domain.strip().lower()) or self._current().by_shop.get(domain)

    def by_merchant_id(self, merchant_id: str) -> Retailer | None:
        """The retailer of an ePOS merchant id."""
        return self._current().by_merchant.get(merchant_id.strip())

    def by_id(self, retailer_id: str) -> Retailer | None:
        """The retailer ``retailer_id``."""
        return self._current().by_id.get(retailer_id)
