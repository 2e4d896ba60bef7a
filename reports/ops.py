"""The operation model every source is normalised into, and the collector that groups ops by flow.

``Op`` is a ``NamedTuple`` rather than a pydantic model on purpose: a 1M-message run is 3-4M ops, and
per-record validation would cost more than the whole audit budget. Validation happens once, cheaply,
in :meth:`Collector.add_records` (kind known, id present, t numeric); malformed records are counted, not
silently dropped: a dropped ``ack`` line would hide a loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, TypeVar

ATTEMPT: Final = "attempt"
ACK: Final = "ack"
FAIL: Final = "fail"
UNKNOWN: Final = "unknown"
OBSERVE: Final = "observe"
EFFECT: Final = "effect"
EXPECT: Final = "expect"
PARKED: Final = "parked"
INFLIGHT: Final = "inflight"

#: Kinds that carry nothing but an id: they are appended to a per-(flow, kind) list in the hot path.
ID_KINDS: Final = frozenset({ATTEMPT, ACK, FAIL, UNKNOWN, OBSERVE, INFLIGHT})
KINDS: Final = ID_KINDS | {EFFECT, EXPECT, PARKED}

DEFAULT_FLOW: Final = "default"
UNSPECIFIED_REASON: Final = "unspecified"

T = TypeVar("T")

#: An effect key: a plain string, or a tuple such as ``(delivery, state, recipient, channel)``.
EffectKey = str | tuple[str, ...]


class Op(NamedTuple):
    """One normalised operation record.

    ``key`` is only meaningful for ``effect`` / ``expect``; ``attrs`` carries the rest (``reason`` for
    ``parked``, anything a source wants to keep for later reports).
    """

    kind: str
    id: str
    flow: str = DEFAULT_FLOW
    t: float | None = None
    key: EffectKey | None = None
    attrs: Mapping[str, Any] | None = None


class OpError(ValueError):
    """A record that cannot be turned into an op (unknown kind, missing id, effect without key)."""


def normalise_key(key: object) -> EffectKey:
    """Make an effect key hashable and comparable: JSON lists become tuples of strings."""
    if isinstance(key, str):
        return key
    if type(key) is tuple:
        return key  # already the typed shape (adapters build tuples of str): no copy
    if isinstance(key, list | tuple):
        return tuple(str(part) for part in key)
    if key is None or isinstance(key, dict):
        raise OpError(f"effect/expect needs a string or list key, not {key!r:.50}")
    return str(key)


def key_text(key: EffectKey) -> str:
    """A one-line rendering of an effect key for samples (``a|b|c``)."""
    return key if isinstance(key, str) else "|".join(key)


@dataclass
class FlowData:
    """Everything collected for one flow, as raw lists (duplicates kept: they are counted later)."""

    name: str
    ids: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in ID_KINDS})
    #: id -> reasons in arrival order (an id may be parked, replayed and parked again).
    parked: dict[str, list[str]] = field(default_factory=dict)
    #: (id, key) per effect record; the id is the entity the effect is about (the order / delivery).
    effects: list[tuple[str, EffectKey]] = field(default_factory=list)
    expects: list[EffectKey] = field(default_factory=list)
    #: expect key -> the id it is about (the first seen): explains a missing effect of an id in flight.
    expect_ids: dict[EffectKey, str] = field(default_factory=dict)

    def records(self) -> int:
        """How many ops this flow holds."""
        return (
            sum(len(v) for v in self.ids.values())
            + sum(len(v) for v in self.parked.values())
            + len(self.effects)
            + len(self.expects)
        )


@dataclass
class Collector:
    """Groups ops by flow and kind; the only per-record work of the audit happens here.

    ``default_flow`` is used for records without a flow. ``t_min`` / ``t_max`` give the span of the
    run as seen by the ops (``None`` when no op carried a time).
    """

    default_flow: str = DEFAULT_FLOW
    flows: dict[str, FlowData] = field(default_factory=dict)
    t_min: float | None = None
    t_max: float | None = None

    def flow(self, name: str) -> FlowData:
        """The flow named ``name``, created on first use."""
        data = self.flows.get(name)
        if data is None:
            data = self.flows[name] = FlowData(name)
        return data

    def add(self, op: Op) -> None:
        """Add one typed op (validated)."""
        self._add(op.kind, op.id, op.flow, op.t, op.key, op.attrs)

    def add_many(self, ops: Iterable[Op]) -> int:
        """Add typed ops; returns how many were added."""
        n = 0
        for op in ops:
            self._add(op.kind, op.id, op.flow, op.t, op.key, op.attrs)
            n += 1
        return n

    def add_record(self, rec: Mapping[str, Any]) -> None:
        """Add one generic record (see :meth:`add_records`); raises :class:`OpError` if it is not an op."""
        self.add_records((rec,))

    def add_records(
        self,
        items: Iterable[T],
        parse: Callable[[T], Any] | None = None,
        on_error: Callable[[int, T, Exception], None] | None = None,
    ) -> int:
        """Add generic records ``{"t", "kind", "id", "flow", "key"?, "reason"?, ...}``; the hot path.

        ``parse`` turns an item into the record dict (``orjson.loads`` for a JSON line) inside the same
        error handling, so one loop does parse + validate + group with everything in local variables:
        at 3-4M records per 1M-message run, building an ``Op`` or calling a method per record costs
        seconds. An item that fails goes to ``on_error(index, item, exc)`` (1-based index) and is not
        added; without ``on_error`` the first failure raises :class:`OpError`. Returns the ops added.
        """
        flows = self.flows
        default_flow = self.default_flow
        tmin = math.inf if self.t_min is None else self.t_min
        tmax = -math.inf if self.t_max is None else self.t_max
        added = 0
        for index, item in enumerate(items, 1):
            try:
                rec: Any = item if parse is None else parse(item)
                kind = rec["kind"]
                id_ = rec["id"]
                if type(id_) is not str or not id_:
                    id_ = _coerce_id(id_)
                t = rec.get("t")
                # Checked before anything is appended, so a rejected record leaves no trace.
                if t is not None and type(t) is not float and type(t) is not int:
                    raise OpError(f"non-numeric t {t!r:.50}")
                flow = rec.get("flow") or default_flow
                data = flows.get(flow)
                if data is None:
                    if type(flow) is not str:
                        raise OpError(f"non-string flow {flow!r:.50}")
                    data = self.flow(flow)
                ids = data.ids.get(kind)
                if ids is not None:
                    ids.append(id_)
                elif kind == EFFECT:
                    data.effects.append((id_, normalise_key(rec.get("key"))))
                elif kind == EXPECT:
                    key = normalise_key(rec.get("key"))
                    data.expects.append(key)
                    data.expect_ids.setdefault(key, id_)
                elif kind == PARKED:
                    reason = rec.get("reason") or _attr_reason(rec.get("attrs"))
                    data.parked.setdefault(id_, []).append(str(reason))
                else:
                    raise OpError(f"unknown kind {kind!r:.50}")
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # ValueError covers JSON decode errors and OpError; the others are wrong shapes
                # (a list instead of an object, a missing field, an unhashable kind).
                if on_error is None:
                    raise OpError(f"not an op record: {exc!r:.200}") from exc
                on_error(index, item, exc)
                continue
            if t is not None:
                # Two comparisons per record is cheaper than keeping every t for a later min()/max().
                if t < tmin:
                    tmin = t
                if t > tmax:
                    tmax = t
            added += 1
        if tmin != math.inf:
            self.t_min, self.t_max = tmin, tmax
        return added

    def _add(
        self,
        kind: str,
        id_: str,
        flow: str,
        t: float | None,
        key: EffectKey | None,
        attrs: Mapping[str, Any] | None,
    ) -> None:
        if kind not in KINDS:
            raise OpError(f"unknown kind {kind!r}")
        if not isinstance(id_, str) or not id_:
            raise OpError(f"op without id: kind={kind!r}")
        if t is not None and (not isinstance(t, int | float) or isinstance(t, bool)):
            raise OpError(f"non-numeric t {t!r:.50}")
        data = self.flow(flow or self.default_flow)
        if kind in ID_KINDS:
            data.ids[kind].append(id_)
        elif kind == EFFECT:
            data.effects.append((id_, normalise_key(key)))
        elif kind == EXPECT:
            owed = normalise_key(key)
            data.expects.append(owed)
            data.expect_ids.setdefault(owed, id_)
        else:
            data.parked.setdefault(id_, []).append(_attr_reason(attrs))
        # Only once the op is in: a rejected op must not stretch the run's span.
        if t is not None:
            if self.t_min is None or t < self.t_min:
                self.t_min = t
            if self.t_max is None or t > self.t_max:
                self.t_max = t


def _coerce_id(id_: object) -> str:
    """Ids are strings; JSON integers (publish sequence numbers) are accepted and converted."""
    if isinstance(id_, int | float | str) and not isinstance(id_, bool) and id_ != "":
        return str(id_)
    raise OpError(f"bad id {id_!r:.50}")


def _attr_reason(attrs: object) -> str:
    if isinstance(attrs, Mapping):
        reason = attrs.get("reason")
        if reason:
            return str(reason)
    return UNSPECIFIED_REASON
