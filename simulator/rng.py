"""Deterministic random streams derived from one seed.

Every random decision in the simulator comes from a stream named by the seed and a label, never from the
global ``random`` module, so that the same seed gives the same orders, the same courier answers and the
same driver routes whatever else ran before (e.g. a rate override changes arrival times but not the
content of order *n*, because arrival times and order content come from different streams).

Example:
    >>> rng_for(42, "courier", "swift", "quote", "s42-000001").random() == \\
    ...     rng_for(42, "courier", "swift", "quote", "s42-000001").random()
    True
"""

from __future__ import annotations

import hashlib
import random
import uuid


def derive_seed(seed: int, *parts: str | int) -> int:
    """A 64-bit seed derived from ``seed`` and the labels ``parts`` (stable across runs and platforms).

    blake2b rather than ``hash()``: Python's string hash is salted per process.
    """
    h = hashlib.blake2b(str(seed).encode(), digest_size=8)
    for part in parts:
        h.update(b"\x1f")
        h.update(str(part).encode())
    return int.from_bytes(h.digest(), "big")


def rng_for(seed: int, *parts: str | int) -> random.Random:
    """A fresh ``random.Random`` stream for the label ``parts`` under ``seed``."""
    return random.Random(derive_seed(seed, *parts))


def uuid_from(rng: random.Random) -> str:
    """A version-4-shaped UUID string drawn from ``rng`` (deterministic, unlike ``uuid.uuid4``)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def token_hex(seed: int, *parts: str | int, nbytes: int = 24) -> str:
    """A deterministic hex token (used for generated API keys and webhook secrets)."""
    h = hashlib.blake2b(str(seed).encode(), digest_size=nbytes, person=b"drill-secret")
    for part in parts:
        h.update(b"\x1f")
        h.update(str(part).encode())
    return h.hexdigest()
