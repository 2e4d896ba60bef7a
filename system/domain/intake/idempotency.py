"""Idempotency of the REST API: a body's fingerprint and what a repeated ``Idempotency-Key`` means."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# --- idempotency --------------------------------------------------------------------------------------------------


def canonical_json(doc: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace: one text per value.

    Example:
        >>> canonical_json({"b": 1, "a": [1.5, "é"]})
        '{"a":[1.5,"é"],"b":1}'
    """
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def idempotency_fingerprint(body: bytes | str | Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``body``: the same order sent with other key order or
    whitespace has the same fingerprint; any change of a value changes it. A body that is not JSON is
    hashed as raw bytes (it will be refused anyway; the retry of the same bytes still matches).

    Example:
        >>> idempotency_fingerprint(b'{"a": 1, "b": 2}') == idempotency_fingerprint('{"b":2,"a":1}')
        True
    """
    if isinstance(body, Mapping):
        text = canonical_json(body)
    else:
        try:
            text = canonical_json(json.loads(body))
        except ValueError:
            raw = body.encode() if isinstance(body, str) else body
            return "raw:" + hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What intake stored for an ``(retailer, Idempotency-Key)``: the body's fingerprint and the delivery."""

    fingerprint: str
    delivery_id: str


class IdempotencyVerdict(StrEnum):
    """``NEW``: create (202); ``REPLAY``: same key, same body → same delivery (200); ``CONFLICT``: same
    key, other body → 409 with the original id."""

    NEW = "new"
    REPLAY = "replay"
    CONFLICT = "conflict"


def idempotency_check(stored: StoredKey | None, fingerprint: str) -> IdempotencyVerdict:
    """The 409 rule. Keys are scoped per retailer by the caller (two retailers may pick the same UUID).

    Example:
        >>> idempotency_check(None, "f1"), idempotency_check(StoredKey("f1", "d1"), "f1").value
        (<IdempotencyVerdict.NEW: 'new'>, 'replay')
        >>> idempotency_check(StoredKey("f1", "d1"), "f2").value
        'conflict'
    """
    if stored is None:
        return IdempotencyVerdict.NEW
    if hmac.compare_digest(stored.fingerprint, fingerprint):
        return IdempotencyVerdict.REPLAY
    return IdempotencyVerdict.CONFLICT
