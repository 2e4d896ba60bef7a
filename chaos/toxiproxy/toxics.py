"""The toxics: one class per Toxiproxy toxic type, and their JSON (de)serialisation.

A toxic acts on one direction (``stream``) of every connection of its proxy. For each connection and
each toxic, a *stage* is created by :mod:`chaos.toxiproxy.proxy`; the toxic's coroutines receive
the stage through a :class:`ToxicContext` and:

* ``pipe(chunk, ctx)`` is called for every chunk of data read from the source, in order, one at a
  time; it forwards data with ``await ctx.emit(...)`` (zero, one or several times), and may wait with
  ``await ctx.sleep_until(deadline)``, which returns ``False`` early when the toxic was updated or
  removed so that a live change takes effect on data already held (Toxiproxy "relinks" the same way).
* ``on_eof`` runs when the source closed, before the connection is closed (``slow_close`` waits here).
* ``on_activate`` / ``on_update`` / ``on_remove`` run when the toxic starts acting on a connection,
  changes, or is removed (``timeout`` arms and disarms its timer there).

Every chunk carries ``ts``: the (loop) time it entered the current stage. ``latency`` releases a chunk
at ``ts + delay`` and stamps it with that time, so consecutive chunks are delayed in a pipeline (a
stream is not slowed to one chunk per ``delay``) and two latency toxics add up.

Units follow Toxiproxy: milliseconds, except ``slicer.delay`` (microseconds) and ``bandwidth.rate``
(KB/s with 1 KB = 1000 bytes, as Toxiproxy computes it).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from chaos.toxiproxy.errors import (
    BAD_REQUEST_BODY,
    INVALID_STREAM,
    INVALID_TOXIC_TYPE,
    ApiError,
)


class Stream(StrEnum):
    """Direction of data: ``upstream`` is client → server, ``downstream`` is server → client."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes moving through a toxic chain; ``ts`` is when they entered the current stage (loop time)."""

    data: bytes
    ts: float


@dataclass(slots=True)
class StageState:
    """Per connection, per toxic mutable state (bytes counted, the bandwidth clock)."""

    count: int = 0
    clock: float = 0.0


class ToxicContext(Protocol):
    """What a toxic may do to the one connection direction it acts on (implemented in ``proxy``)."""

    @property
    def removed(self) -> bool:
        """True once the toxic was removed from the proxy: pass held data on, stop interfering."""
        ...

    @property
    def state(self) -> StageState: ...

    def now(self) -> float:
        """The event loop's clock, the time base of ``Chunk.ts`` and ``sleep_until``."""
        ...

    async def emit(self, chunk: Chunk) -> None:
        """Pass ``chunk`` to the next toxic (or write it to the destination)."""
        ...

    async def sleep_until(self, deadline: float) -> bool:
        """Wait until ``deadline`` (loop time, may be ``inf``); False if woken by an update/removal."""
        ...

    def close(self, reason: str) -> None:
        """Close both sockets of the connection (FIN), after flushing what was already written."""
        ...

    def reset(self, reason: str) -> None:
        """Abort both sockets with SO_LINGER 0, so the peers see a TCP RST (ECONNRESET)."""
        ...

    def set_timer(self, delay: float, reason: str) -> None:
        """Close the connection after ``delay`` seconds unless the timer is cancelled or re-set."""
        ...

    def cancel_timer(self) -> None: ...


class Toxic:
    """Base class: a named toxic with ``stream``, ``toxicity`` and integer attributes.

    Subclasses set ``type_name`` and ``defaults`` (attribute name → default), and override the hooks.
    The base behaviour forwards data unchanged.
    """

    type_name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, int]] = {}

    def __init__(self, name: str, stream: Stream, toxicity: float, attributes: dict[str, int]) -> None:
        self.name = name
        self.stream = stream
        self.toxicity = toxicity
        self.attributes = {**self.defaults, **attributes}

    def attr(self, key: str) -> int:
        return self.attributes[key]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type_name,
            "stream": str(self.stream),
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }

    async def pipe(self, chunk: Chunk, ctx: ToxicContext) -> None:
        await ctx.emit(chunk)

    async def on_eof(self, ctx: ToxicContext) -> None:
        return None

    def on_activate(self, ctx: ToxicContext) -> None:
        return None

    def on_update(self, ctx: ToxicContext) -> None:
        return None

    def on_remove(self, ctx: ToxicContext) -> None:
        return None


class LatencyToxic(Toxic):
    """Delays every chunk by ``latency`` ± ``jitter`` ms, counted from when it arrived."""

    type_name = "latency"
    defaults: ClassVar[dict[str, int]] = {"latency": 0, "jitter": 0}

    async def pipe(self, chunk: Chunk, ctx: ToxicContext) -> None:
        # One random draw per chunk (Toxiproxy draws uniformly in [-jitter, +jitter)); kept across an
        # update of ``latency`` so that a change re-times held data instead of re-rolling it.
        unit = random.uniform(-1.0, 1.0)
        while True:
            delay_ms = max(0.0, self.attr("latency") + unit * self.attr("jitter"))
            deadline = chunk.ts + delay_ms / 1000.0
            if await ctx.sleep_until(deadline):
                await ctx.emit(Chunk(chunk.data, deadline))
                return
            if ctx.removed:
                # Toxiproxy flushes held data when a latency toxic is removed: don't drop bytes.
                await ctx.emit(Chunk(chunk.data, ctx.now()))
                return


class BandwidthToxic(Toxic):
    """Limits throughput to ``rate`` KB/s; a rate of 0 lets nothing through until changed or removed."""

    type_name = "bandwidth"
    defaults: ClassVar[dict[str, int]] = {"rate": 0}

    async def pipe(self, chunk: Chunk, ctx: ToxicContext) -> None:
        data = chunk.data
        state = ctx.state
        while data:
            if ctx.removed:
                await ctx.emit(Chunk(data, ctx.now()))
                return
            rate = self.attr("rate")  # bytes per millisecond
            if rate <= 0:
                await ctx.sleep_until(math.inf)
                continue
            # At most 100 ms worth of data per write, as Toxiproxy does, so a slow link trickles
            # instead of delivering a big chunk in one burst after a long silence.
            piece = data[: rate * 100]
            # A virtual clock: the time the link is free again. An idle link does not bank credit.
            start = max(state.clock, ctx.now())
            due = start + len(piece) / (rate * 1000.0)
            if not await ctx.sleep_until(due):
                continue  # updated or removed: re-evaluate with the new rate, clock not advanced
            state.clock = due
            await ctx.emit(Chunk(piece, due))
            data = data[len(piece) :]


class SlowCloseToxic(Toxic):
    """Delays closing the connection by ``delay`` ms after the source closed."""

    type_name = "slow_close"
    defaults: ClassVar[dict[str, int]] = {"delay": 0}

    async def on_eof(self, ctx: ToxicContext) -> None:
        closed_at = ctx.now()
        # Re-read ``delay`` when woken by an update; stop waiting once the toxic is removed.
        while not await ctx.sleep_until(closed_at + self.attr("delay") / 1000.0) and not ctx.removed:
            pass


class TimeoutToxic(Toxic):
    """Lets no data through; closes the connection after ``timeout`` ms (0: never).

    Like Toxiproxy, data arriving while the toxic is active is dropped (not held), and removing the
    toxic closes the connections it was acting on: their byte stream has a hole in it.
    """

    type_name = "timeout"
    defaults: ClassVar[dict[str, int]] = {"timeout": 0}

    async def pipe(self, chunk: Chunk, ctx: ToxicContext) -> None:
        return None  # dropped on the floor

    def on_activate(self, ctx: ToxicContext) -> None:
        if self.attr("timeout") > 0:
            ctx.set_timer(self.attr("timeout") / 1000.0, f"timeout toxic {self.name!r} expired")

    def on_update(self, ctx: ToxicContext) -> None:
        ctx.cancel_timer()
        self.on_activate(ctx)

    def on_remove(self, ctx: ToxicContext) -> None:
        ctx.cancel_timer()
        ctx.close(f"timeout toxic {self.name!r} removed")


class ResetPeerToxic(Toxic):
    """On the first data, waits ``timeout`` ms then resets the connection (TCP RST, SO_LINGER 0)."""

    type_name = "reset_peer"
    defaults: ClassVar[dict[str, int]] = {"timeout": 0}

    async def pipe(self, chunk: Chunk, ctx: ToxicContext) -> None:
        start = ctx.now()
        while not await ctx.sleep_until(start + self.attr("timeout") / 1000.0):
            if ctx.removed:
                # Removed before it fired: let the data through rather than reset anyway.
                await ctx.emit(chunk)
                return
        ctx.reset(f"reset_peer toxic {self.name!r}")


def slice_bounds(size: int, average: int, variation: int, rng: random.Random) -> list[tuple[int, int]]:
    """Cut ``[0, size)`` into consecutive pieces of about ``average`` ± ``variation`` bytes.

    Halves recursively with a random offset (Toxiproxy's method), so that no position in the buffer
    tends to get smaller or larger pieces than another.
    """
    if size <= 0:
        return []
    if average <= 0:
        return [(0, size)]
    variation = max(0, min(variation, average - 1))
    out: list[tuple[int, int]] = []
    stack = [(0, size)]
    while stack:
        start, end = stack.pop()
        if (end - start) - average <= variation or end - start < 2:
            out.append((start, end))
            continue
        mid = start + (end - start) // 2
        if variation:
            mid += rng.randint(-variation, variation)
        mid = min(max(mid, start + 1), end - 1)
        # Right half first on the stack so the left half is emitted first.
        stack.append((mid, end))
        stack.append((start, mid))
    return out


class SlicerToxic(Toxic):
    """Splits data into pieces of ``average_size`` ± ``size_variation`` bytes, ``delay`` µs apart."""

    type_name = "slicer"
    defaults: ClassVar[dict[str, int]] = {"average_size": 0, "size_variation": 0, "delay": 0}
    _rng = random.Random()

    async def pipe(self, chunk: Chunk, ctx: ToxicContext) -> None:
        data = chunk.data
        bounds = slice_bounds(len(data), self.attr("average_size"), self.attr("size_variation"), self._rng)
        for index, (start, end) in enumerate(bounds):
            await ctx.emit(Chunk(data[start:end], ctx.now()))
            if index == len(bounds) - 1:
                return
            delay = self.attr("delay") / 1_000_000.0
            if delay > 0 and not await ctx.sleep_until(ctx.now() + delay) and ctx.removed:
                await ctx.emit(Chunk(data[end:], ctx.now()))
                return


class LimitDataToxic(Toxic):
    """Forwards ``bytes`` bytes in total on this direction, then closes the connection."""

    type_name = "limit_data"
    defaults: ClassVar[dict[str, int]] = {"bytes": 0}

    async def pipe(self, chunk: Chunk, ctx: ToxicContext) -> None:
        state = ctx.state
        remaining = self.attr("bytes") - state.count
        if remaining > 0:
            piece = chunk.data[:remaining]
            state.count += len(piece)
            await ctx.emit(Chunk(piece, chunk.ts))
        if self.attr("bytes") - state.count <= 0:
            ctx.close(f"limit_data toxic {self.name!r}: {state.count} bytes forwarded")


TOXIC_TYPES: dict[str, type[Toxic]] = {
    cls.type_name: cls
    for cls in (
        LatencyToxic,
        BandwidthToxic,
        SlowCloseToxic,
        TimeoutToxic,
        ResetPeerToxic,
        SlicerToxic,
        LimitDataToxic,
    )
}


# --- JSON ------------------------------------------------------------------------------------------


def _bad(detail: str) -> ApiError:
    return BAD_REQUEST_BODY.with_detail(detail)


def _parse_toxicity(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise _bad(f"toxicity must be a number between 0 and 1, got {value!r}")
    return float(value)


def _parse_attributes(cls: type[Toxic], value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"attributes must be an object, got {value!r}")
    out: dict[str, int] = {}
    for key, raw in value.items():
        if key not in cls.defaults:
            # Toxiproxy silently ignores unknown keys; a typo would then give a toxic that does
            # nothing, so it is refused here (a drill accepted by this server is accepted by Toxiproxy).
            known = ", ".join(cls.defaults)
            raise _bad(f"unknown attribute {key!r} for toxic type {cls.type_name!r} (known: {known})")
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise _bad(f"attribute {key!r} must be a non-negative integer, got {raw!r}")
        out[key] = raw
    return out


def toxic_from_json(body: Any) -> Toxic:
    """Build a toxic from a ``POST /proxies/{proxy}/toxics`` body, with Toxiproxy's defaults.

    ``stream`` defaults to ``downstream``, ``toxicity`` to 1.0, ``name`` to ``<type>_<stream>``.
    """
    if not isinstance(body, dict):
        raise _bad("expected a JSON object")
    type_name = body.get("type")
    if not isinstance(type_name, str) or type_name not in TOXIC_TYPES:
        known = ", ".join(TOXIC_TYPES)
        raise INVALID_TOXIC_TYPE.with_detail(f"{type_name!r} (known: {known})")
    cls = TOXIC_TYPES[type_name]
    stream_raw = body.get("stream") or "downstream"
    if stream_raw not in ("upstream", "downstream"):
        raise INVALID_STREAM
    stream = Stream(stream_raw)
    name = body.get("name") or f"{type_name}_{stream}"
    if not isinstance(name, str):
        raise _bad(f"name must be a string, got {name!r}")
    toxicity = _parse_toxicity(body.get("toxicity", 1.0))
    attributes = _parse_attributes(cls, body.get("attributes"))
    return cls(name, stream, toxicity, attributes)


def apply_update(toxic: Toxic, body: Any) -> tuple[float, dict[str, int]]:
    """Validate a ``POST /proxies/{proxy}/toxics/{toxic}`` body; return the new toxicity and attributes.

    Attributes are merged into the current ones (a partial update keeps the others), as Toxiproxy
    decodes the body over the existing toxic. Name, type and stream cannot change: sending them with
    a different value is refused rather than silently ignored.
    """
    if not isinstance(body, dict):
        raise _bad("expected a JSON object")
    current = toxic.to_json()
    for key in ("name", "type", "stream"):
        if key in body and body[key] not in (None, "", current[key]):
            raise _bad(f"{key} of a toxic cannot be changed (delete it and create a new one)")
    toxicity = _parse_toxicity(body["toxicity"]) if "toxicity" in body else toxic.toxicity
    attributes = {**toxic.attributes, **_parse_attributes(type(toxic), body.get("attributes"))}
    return toxicity, attributes
