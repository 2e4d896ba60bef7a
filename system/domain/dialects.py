"""Courier dialects: each courier family's status names and payload shapes, mapped onto the canonical set.

Couriers publish ``status`` messages on ``courier.events`` (docs/intake-api.md §3.5): an envelope the
platform routes on, and a ``payload`` in the courier's own dialect. :func:`parse_status` validates both
and returns one normalised :class:`CourierStatusEvent`; a status name this module does not know raises
:class:`UnknownCourierStatus` — it is never guessed (a wrong guess would move a delivery to a state
the courier never reported; a loud error parks the message for a human).

Names are matched exactly (case included): ``"Delivered"`` is not an Uber-style status.

Example:
    >>> ev = parse_status({"type": "status", "courier": "dashly", "dialect": "doordash",
    ...     "delivery_id": "dlv_1", "order_reference": "s42-0000001", "courier_job_id": "dashly-job-1",
    ...     "seq": 2, "at": "2026-11-18T11:09:38Z", "message_id": "dashly-job-1:2",
    ...     "status": "DASHER_CONFIRMED", "payload": {"event_name": "DASHER_CONFIRMED",
    ...     "external_delivery_id": "s42-0000001", "created_at": "2026-11-18T11:09:38Z",
    ...     "dasher_id": "d-7", "dasher_location": {"lat": 51.51, "lng": -0.10}}})
    >>> ev.state, ev.seq, ev.location
    (<State.COURIER_ASSIGNED: 'courier_assigned'>, 2, LatLon(lat=51.51, lon=-0.1))
    >>> canonical_state("stuart", "almost_delivering")
    <State.IN_TRANSIT: 'in_transit'>
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from system.domain.common import Dialect, LatLon, Vehicle
from system.domain.lifecycle import Event, State

#: Each dialect's status name → canonical state (the table of docs/intake-api.md §3.5).
DIALECT_STATUS: Final[dict[Dialect, dict[str, State]]] = {
    "uber": {
        "pending": State.BOOKED,
        "pickup": State.COURIER_ASSIGNED,
        "pickup_complete": State.PICKED_UP,
        "dropoff": State.IN_TRANSIT,
        "delivered": State.DELIVERED,
        "dropoff_failed": State.FAILED,
        "returned": State.RETURNED,
        "canceled": State.CANCELLED,
    },
    "doordash": {
        "DELIVERY_CREATED": State.BOOKED,
        "DASHER_CONFIRMED": State.COURIER_ASSIGNED,
        "DASHER_PICKED_UP": State.PICKED_UP,
        "DASHER_CONFIRMED_DROPOFF_ARRIVAL": State.IN_TRANSIT,
        "DASHER_DROPPED_OFF": State.DELIVERED,
        "DELIVERY_ATTEMPT_FAILED": State.FAILED,
        "DELIVERY_RETURNED": State.RETURNED,
        "DELIVERY_CANCELLED": State.CANCELLED,
    },
    "stuart": {
        "pending": State.BOOKED,
        "picking": State.COURIER_ASSIGNED,
        "delivering": State.PICKED_UP,
        "almost_delivering": State.IN_TRANSIT,
        "delivered": State.DELIVERED,
        "failed": State.FAILED,
        "returned": State.RETURNED,
        "cancelled": State.CANCELLED,
    },
}

#: The lifecycle event a courier status means (a courier "cancelled" confirms a cancellation).
STATE_EVENT: Final[dict[State, Event]] = {
    State.BOOKED: Event.BOOKED,
    State.COURIER_ASSIGNED: Event.COURIER_ASSIGNED,
    State.PICKED_UP: Event.PICKED_UP,
    State.IN_TRANSIT: Event.IN_TRANSIT,
    State.DELIVERED: Event.DELIVERED,
    State.FAILED: Event.FAILED,
    State.RETURNED: Event.RETURNED,
    State.CANCELLED: Event.CANCELLED,
}


class CourierMessageError(Exception):
    """Base of the errors a courier message can cause; ``reason`` is a one-line explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownCourierStatus(CourierMessageError):
    """A courier sent a status its dialect does not define (never guessed: park it, tell a human).

    Example:
        >>> str(UnknownCourierStatus("zoomly", "uber", "teleported"))
        "courier 'zoomly' (uber dialect) sent unknown status 'teleported'; known: pending, pickup, pickup_complete, dropoff, delivered, dropoff_failed, returned, canceled"
    """

    def __init__(self, courier: str, dialect: str, status: str) -> None:
        known = ", ".join(DIALECT_STATUS.get(dialect, {}))  # type: ignore[call-overload]
        what = f"known: {known}" if known else "unknown dialect"
        super().__init__(f"courier {courier!r} ({dialect} dialect) sent unknown status {status!r}; {what}")
        self.courier = courier
        self.dialect = dialect
        self.status = status


class CourierMessageInvalid(CourierMessageError):
    """A courier message's shape is wrong (missing field, wrong type, contradictory fields)."""


def canonical_state(dialect: Dialect, status: str, courier: str = "?") -> State:
    """The canonical state of ``status`` in ``dialect``; :class:`UnknownCourierStatus` if it has none."""
    try:
        return DIALECT_STATUS[dialect][status]
    except KeyError:
        raise UnknownCourierStatus(courier, dialect, status) from None


# --- payload shapes (providers add fields over time: unknown keys are ignored here) ------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _LatLng(_Lenient):
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)


class _UberCourier(_Lenient):
    name: str | None = None
    vehicle_type: str | None = None
    location: _LatLng | None = None


class UberPayload(_Lenient):
    """Uber-style: ``{"kind": "event.delivery_status", "status", "delivery_id", "external_id", "created",
    "courier": {"name", "vehicle_type", "location": {"lat", "lng"}}}``."""

    kind: Literal["event.delivery_status"]
    status: str
    delivery_id: str
    external_id: str
    created: AwareDatetime
    courier: _UberCourier | None = None


class DoorDashPayload(_Lenient):
    """DoorDash-style: ``{"event_name", "external_delivery_id", "created_at", "dasher_id",
    "dasher_location": {"lat", "lng"}}``."""

    event_name: str
    external_delivery_id: str
    created_at: AwareDatetime
    dasher_id: str | None = None
    dasher_location: _LatLng | None = None


class _StuartDriver(_Lenient):
    id: str | None = None
    transportType: str | None = None  # the provider's own (camelCase) field name
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class _StuartData(_Lenient):
    status: str
    clientReference: str  # the provider's own (camelCase) field name
    id: str
    updatedAt: AwareDatetime  # the provider's own (camelCase) field name
    driver: _StuartDriver | None = None


class StuartPayload(_Lenient):
    """Stuart-style: ``{"event": "delivery", "type": "update", "data": {"status", "clientReference",
    "id", "updatedAt", "driver": {"id", "transportType", "latitude", "longitude"}}}``."""

    event: Literal["delivery"]
    type: str
    data: _StuartData


class StatusEnvelope(_Lenient):
    """The routing envelope every courier status carries (the same for all dialects)."""

    type: Literal["status"]
    courier: str
    dialect: Dialect
    delivery_id: str | None = None
    order_reference: str
    courier_job_id: str
    seq: int = Field(ge=0)
    at: AwareDatetime
    message_id: str
    status: str
    # The courier's cancellation confirmation carries no payload (the envelope's status is enough).
    payload: dict[str, Any] | None = None


class LocationEnvelope(_Lenient):
    """A driver location ping (docs/intake-api.md §3.6)."""

    type: Literal["location"]
    courier: str
    dialect: Dialect
    delivery_id: str | None = None
    order_reference: str
    courier_job_id: str
    seq: int = Field(ge=0)
    at: AwareDatetime
    message_id: str
    location: LatLon


@dataclass(frozen=True, slots=True)
class CourierStatusEvent:
    """A courier status, normalised: which job, which canonical state, where the driver was, when."""

    delivery_id: str | None
    courier: str
    dialect: Dialect
    courier_job_id: str
    order_reference: str
    seq: int
    state: State
    status: str  # the dialect's own name, kept for the audit trail
    at: datetime
    message_id: str
    location: LatLon | None = None
    driver_id: str | None = None
    vehicle: str | None = None

    @property
    def event(self) -> Event:
        """The lifecycle event this status means (feed it to :func:`system.domain.lifecycle.transition`)."""
        return STATE_EVENT[self.state]


@dataclass(frozen=True, slots=True)
class CourierLocation:
    """A driver location ping, normalised."""

    delivery_id: str | None
    courier: str
    courier_job_id: str
    order_reference: str
    seq: int
    at: datetime
    message_id: str
    location: LatLon


def _load(doc: Mapping[str, Any] | bytes | str) -> Mapping[str, Any]:
    if isinstance(doc, bytes | str):
        try:
            loaded = json.loads(doc)
        except ValueError as exc:
            raise CourierMessageInvalid(f"not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise CourierMessageInvalid("message must be a JSON object")
        return loaded
    return doc


def _errors(where: str, exc: ValidationError) -> CourierMessageInvalid:
    parts = [f"{where}{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return CourierMessageInvalid("; ".join(parts))


def _check(cond: bool, reason: str) -> None:
    if not cond:
        raise CourierMessageInvalid(reason)


def parse_status(
    doc: Mapping[str, Any] | bytes | str, expected_dialect: Dialect | None = None
) -> CourierStatusEvent:
    """Validate a courier ``status`` message and normalise it.

    ``expected_dialect``: the dialect the marketplace registry gives this courier; a message claiming
    another one is refused (a misconfigured courier must not be mapped with the wrong table).

    Raises :class:`CourierMessageInvalid` (shape, contradictions between envelope and payload) or
    :class:`UnknownCourierStatus`.
    """
    try:
        env = StatusEnvelope.model_validate(_load(doc))
    except ValidationError as exc:
        raise _errors("", exc) from None
    if expected_dialect is not None and env.dialect != expected_dialect:
        raise CourierMessageInvalid(
            f"courier {env.courier!r} is registered with the {expected_dialect} dialect, message says {env.dialect}"
        )
    status, location, driver, vehicle = env.status, None, None, None
    if env.payload is not None:
        try:
            if env.dialect == "uber":
                u = UberPayload.model_validate(env.payload)
                status = u.status
                _check(
                    u.delivery_id == env.courier_job_id,
                    "payload.delivery_id is not the envelope's courier_job_id",
                )
                _check(
                    u.external_id == env.order_reference,
                    "payload.external_id is not the envelope's order_reference",
                )
                if u.courier is not None:
                    driver, vehicle = u.courier.name, u.courier.vehicle_type
                    if u.courier.location is not None:
                        location = LatLon(lat=u.courier.location.lat, lon=u.courier.location.lng)
            elif env.dialect == "doordash":
                d = DoorDashPayload.model_validate(env.payload)
                status = d.event_name
                _check(
                    d.external_delivery_id == env.order_reference,
                    "payload.external_delivery_id is not the envelope's order_reference",
                )
                driver = d.dasher_id
                if d.dasher_location is not None:
                    location = LatLon(lat=d.dasher_location.lat, lon=d.dasher_location.lng)
            else:
                s = StuartPayload.model_validate(env.payload)
                status = s.data.status
                _check(
                    s.data.id == env.courier_job_id, "payload.data.id is not the envelope's courier_job_id"
                )
                _check(
                    s.data.clientReference == env.order_reference,
                    "payload.data.clientReference is not the envelope's order_reference",
                )
                drv = s.data.driver
                if drv is not None:
                    driver, vehicle = drv.id, drv.transportType
                    if drv.latitude is not None and drv.longitude is not None:
                        location = LatLon(lat=drv.latitude, lon=drv.longitude)
        except ValidationError as exc:
            raise _errors("payload.", exc) from None
        _check(status == env.status, f"payload status {status!r} contradicts envelope status {env.status!r}")
    state = canonical_state(env.dialect, status, env.courier)
    return CourierStatusEvent(
        delivery_id=env.delivery_id,
        courier=env.courier,
        dialect=env.dialect,
        courier_job_id=env.courier_job_id,
        order_reference=env.order_reference,
        seq=env.seq,
        state=state,
        status=status,
        at=env.at,
        message_id=env.message_id,
        location=location,
        driver_id=driver,
        vehicle=vehicle,
    )


def parse_location(doc: Mapping[str, Any] | bytes | str) -> CourierLocation:
    """Validate a driver ``location`` ping (:class:`CourierMessageInvalid` when malformed).

    Example:
        >>> parse_location({"type": "location", "courier": "zoomly", "dialect": "uber", "delivery_id": "d1",
        ...     "order_reference": "s1-0000001", "courier_job_id": "j1", "seq": 4, "at": "2026-11-18T11:00:00Z",
        ...     "message_id": "j1:4", "location": {"lat": 51.5, "lon": -0.1}}).location
        LatLon(lat=51.5, lon=-0.1)
    """
    try:
        env = LocationEnvelope.model_validate(_load(doc))
    except ValidationError as exc:
        raise _errors("", exc) from None
    return CourierLocation(
        env.delivery_id, env.courier, env.courier_job_id, env.order_reference, env.seq, env.at,
        env.message_id, env.location,
    )  # fmt: skip


# --- booking and cancel answers ---------------------------------------------------------------------


class _Driver(_Lenient):
    id: str
    vehicle: Vehicle | None = None


class BookingAnswer(_Lenient):
    """``booking_accepted`` / ``booking_rejected`` (docs/intake-api.md §3.3)."""

    type: Literal["booking_accepted", "booking_rejected"]
    courier: str
    delivery_id: str | None = None
    order_reference: str
    in_reply_to: str | None = None
    quote_id: str
    message_id: str
    courier_job_id: str | None = None
    driver: _Driver | None = None
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        """True for a booking the courier took."""
        return self.type == "booking_accepted"


class CancelAnswer(_Lenient):
    """``cancel_accepted`` / ``cancel_rejected`` (reason ``unknown_job`` or ``too_late:<state>``)."""

    type: Literal["cancel_accepted", "cancel_rejected"]
    courier: str
    delivery_id: str | None = None
    order_reference: str
    courier_job_id: str
    message_id: str
    reason: str | None = None


def parse_booking_answer(doc: Mapping[str, Any] | bytes | str) -> BookingAnswer:
    """Validate a booking answer; an accepted one must name its job (else :class:`CourierMessageInvalid`)."""
    try:
        ans = BookingAnswer.model_validate(_load(doc))
    except ValidationError as exc:
        raise _errors("", exc) from None
    if ans.accepted:
        _check(ans.courier_job_id is not None, "booking_accepted without courier_job_id")
    return ans


def parse_cancel_answer(doc: Mapping[str, Any] | bytes | str) -> CancelAnswer:
    """Validate a cancel answer."""
    try:
        return CancelAnswer.model_validate(_load(doc))
    except ValidationError as exc:
        raise _errors("", exc) from None
